//! Types shared by every part of Nubis: the public REST API (`/v1/...`) and the
//! controller-agent protocol (`/v1/agent/...`).
//!
//! Requests are validated once, while they are deserialized: a value of a type
//! in this crate is known to be well-formed, so handlers never re-check it.

pub mod agent;
pub mod error;
pub mod flavors;
pub mod floating_ips;
pub mod ids;
pub mod images;
pub mod keypairs;
pub mod names;
pub mod networks;
pub mod resources;
pub mod security_groups;
pub mod servers;
pub mod users;

pub use error::{ErrorBody, ErrorDetail};
pub use ids::{
    FlavorId, FloatingIpId, FloatingIpPoolId, HostId, ImageId, KeypairId, NetworkId, PortId,
    ProjectId, SecurityGroupId, SecurityGroupRuleId, ServerId, UserId,
};
pub use names::Name;
