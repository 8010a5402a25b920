//! Hosts as administrators see them (`GET /v1/hosts`): capacity, what is
//! placed on them, whether they are up and whether they take new servers.

use crate::agent::Accelerator;
use crate::HostId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Whether a host's agent has been heard from within the heartbeat timeout
/// (the controller's `--host-down-after`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    Up,
    Down,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// Resources promised to the servers placed on a host (servers being
/// deleted included: their resources are not free until the host let go).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostAllocation {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// One host (`GET /v1/hosts`, `GET /v1/hosts/{id}`; admins only).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostSummary {
    pub id: HostId,
    pub name: String,
    /// The agent's own API (console logs).
    pub url: String,
    pub state: HostState,
    /// Whether new servers may be placed here.
    pub enabled: bool,
    /// Why an administrator disabled the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Capacity as the agent reported it (before overcommit).
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub accel: Accelerator,
    /// The CPU model the agent reported (`/proc/cpuinfo`), empty if unknown.
    pub cpu_model: String,
    pub allocated: HostAllocation,
    /// Servers placed on the host (including those being deleted).
    pub instances: u64,
    pub last_seen: DateTime<Utc>,
}

/// `POST /v1/hosts/{id}/disable`: no new servers on the host (those on it
/// keep running). The body is optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableHost {
    /// Why, for other administrators (at most 255 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The longest reason a disabled host may carry.
pub const MAX_DISABLED_REASON: usize = 255;
