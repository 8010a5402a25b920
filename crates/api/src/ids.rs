//! Typed identifiers: a `ServerId` can never be passed where an `ImageId` is meant.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random identifier.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

typed_id!(
    /// Identifies a user account.
    UserId
);
typed_id!(
    /// Identifies a project, the owner of every resource.
    ProjectId
);
typed_id!(
    /// Identifies a server (a virtual machine).
    ServerId
);
typed_id!(
    /// Identifies an image in the catalog.
    ImageId
);
typed_id!(
    /// Identifies a flavor (a named size).
    FlavorId
);
typed_id!(
    /// Identifies a hypervisor host, i.e. one agent.
    HostId
);
typed_id!(
    /// Identifies one move of a server between hosts (cold, live, evacuation).
    MigrationId
);
typed_id!(
    /// Identifies a private network.
    NetworkId
);
typed_id!(
    /// Identifies a port: one NIC of a server on one network.
    PortId
);
typed_id!(
    /// Identifies an SSH key pair.
    KeypairId
);
typed_id!(
    /// Identifies a floating IP.
    FloatingIpId
);
typed_id!(
    /// Identifies a floating IP pool.
    FloatingIpPoolId
);
typed_id!(
    /// Identifies a security group.
    SecurityGroupId
);
typed_id!(
    /// Identifies a security group rule.
    SecurityGroupRuleId
);
typed_id!(
    /// Identifies a server group (affinity or anti-affinity of its members).
    ServerGroupId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = ServerId::new();
        assert_eq!(id.to_string().parse::<ServerId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ServerId>(&json).unwrap(), id);
        assert!("not-a-uuid".parse::<ServerId>().is_err());
    }
}
