//! Flavors: named sizes a server can be created from.

use crate::resources::{DiskGib, MemoryMib, Vcpus};
use crate::{FlavorId, Name};
use serde::{Deserialize, Serialize};

/// A named size.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Flavor {
    pub id: FlavorId,
    pub name: String,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// Default bandwidth limits of servers of this flavor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<crate::bandwidth::Bandwidth>,
}

/// `POST /v1/flavors` (admin only).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFlavor {
    pub name: Name,
    pub vcpus: Vcpus,
    pub memory_mib: MemoryMib,
    pub disk_gib: DiskGib,
    #[serde(default)]
    pub bandwidth: Option<crate::bandwidth::Bandwidth>,
}
