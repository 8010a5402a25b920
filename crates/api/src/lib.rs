//! Types shared by every part of Nubis: the public REST API (`/v1/...`) and the
//! controller-agent protocol (`/v1/agent/...`).
//!
//! Requests are validated once, while they are deserialized: a value of a type
//! in this crate is known to be well-formed, so handlers never re-check it.

pub mod agent;
pub mod audit;
pub mod bandwidth;
pub mod console;
pub mod error;
pub mod events;
pub mod flavors;
pub mod floating_ips;
pub mod hosts;
pub mod ids;
pub mod images;
pub mod join;
pub mod keypairs;
pub mod leases;
pub mod migrations;
pub mod names;
pub mod networks;
pub mod quotas;
pub mod resources;
pub mod schema;
pub mod security_groups;
pub mod server_groups;
pub mod servers;
pub mod traffic;
pub mod usage_records;
pub mod users;
pub mod whole;

pub use error::{ErrorBody, ErrorDetail};
pub use ids::{
    FlavorId, FloatingIpId, FloatingIpPoolId, HostId, ImageId, KeypairId, MigrationId, NetworkId,
    PortId, ProjectId, SecurityGroupId, SecurityGroupRuleId, ServerGroupId, ServerId, UserId,
};
pub use names::Name;

/// Documents a type validated through a wire struct with that struct's schema.
/// The schemas the wire struct refers to (e.g. an enum field) are registered
/// too, so every `$ref` in the document resolves.
#[macro_export]
macro_rules! schema_as {
    ($ty:ty, $wire:ty) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <$wire as utoipa::PartialSchema>::schema()
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($ty))
            }
            fn schemas(
                schemas: &mut Vec<(
                    String,
                    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
                )>,
            ) {
                <$wire as utoipa::ToSchema>::schemas(schemas);
            }
        }
    };
}
