//! Floating IPs: public addresses from an admin pool, mapped 1:1 (NAT) to a
//! server's first address.

use crate::{FloatingIpId, Name, ProjectId, ServerId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The most addresses one pool may hold.
pub const MAX_POOL_SIZE: u32 = 65_536;

/// `POST /v1/floating-ip-pools` (admin): an address range routed to the hosts.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFloatingIpPool {
    pub name: Name,
    #[schema(schema_with = crate::schema::ipv4)]
    pub first: Ipv4Addr,
    /// At most `MAX_POOL_SIZE` addresses after `first` (checked with the
    /// request: 400 otherwise).
    #[schema(schema_with = crate::schema::ipv4)]
    pub last: Ipv4Addr,
}

impl CreateFloatingIpPool {
    /// Checks the range: ordered, not absurdly large, unicast.
    pub fn check(&self) -> Result<(), String> {
        let (a, b) = (u32::from(self.first), u32::from(self.last));
        if a > b {
            return Err(format!(
                "first {} comes after last {}",
                self.first, self.last
            ));
        }
        if b - a >= MAX_POOL_SIZE {
            return Err(format!("a pool may hold at most {MAX_POOL_SIZE} addresses"));
        }
        for ip in [self.first, self.last] {
            if ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                || ip.is_broadcast()
                || ip.is_link_local()
            {
                return Err(format!("{ip} cannot be a floating IP"));
            }
        }
        Ok(())
    }
}

/// A floating IP pool.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FloatingIpPool {
    pub id: crate::FloatingIpPoolId,
    pub name: String,
    #[schema(value_type = String)]
    pub first: Ipv4Addr,
    #[schema(value_type = String)]
    pub last: Ipv4Addr,
}

/// `POST /v1/floating-ips`: allocate one (from `pool`, or the first pool with room).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateFloatingIp {
    #[serde(default)]
    pub pool: Option<String>,
}

/// `PATCH /v1/floating-ips/{id}`: associate with a server (id or name), or
/// disassociate with `null`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFloatingIp {
    pub server: Option<String>,
}

/// A floating IP of a project.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FloatingIp {
    pub id: FloatingIpId,
    pub project: ProjectId,
    pub pool: String,
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    pub server: Option<ServerId>,
    /// The server address it maps to.
    #[schema(value_type = Option<String>)]
    pub fixed_ip: Option<Ipv4Addr>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(a: &str, b: &str) -> CreateFloatingIpPool {
        CreateFloatingIpPool {
            name: "p".parse().unwrap(),
            first: a.parse().unwrap(),
            last: b.parse().unwrap(),
        }
    }

    #[test]
    fn pool_ranges_are_checked() {
        assert!(pool("203.0.113.10", "203.0.113.20").check().is_ok());
        assert!(pool("203.0.113.20", "203.0.113.10").check().is_err());
        assert!(pool("10.0.0.0", "10.2.0.0").check().is_err());
        assert!(pool("127.0.0.1", "127.0.0.2").check().is_err());
        assert!(pool("169.254.0.1", "169.254.0.2").check().is_err());
    }
}
