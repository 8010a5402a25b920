//! Servers (virtual machines) as users see them.

use crate::resources::{DiskGib, MemoryMib, Vcpus};
use crate::{FlavorId, HostId, ImageId, Name, ProjectId, ServerId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/servers`: either a `flavor`, or `vcpus` + `memory_mib` + `disk_gib`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServer {
    pub name: Name,
    /// Image id or name.
    pub image: String,
    /// Flavor id or name.
    #[serde(default)]
    pub flavor: Option<String>,
    #[serde(default)]
    pub vcpus: Option<Vcpus>,
    #[serde(default)]
    pub memory_mib: Option<MemoryMib>,
    #[serde(default)]
    pub disk_gib: Option<DiskGib>,
}

/// The size a create request asks for, once the flavor-or-sizes choice is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestedSize {
    Flavor,
    Explicit {
        vcpus: Vcpus,
        memory_mib: MemoryMib,
        disk_gib: DiskGib,
    },
}

impl CreateServer {
    /// Checks that exactly one way of sizing the server was used.
    pub fn requested_size(&self) -> Result<RequestedSize, String> {
        let explicit = [
            self.vcpus.is_some(),
            self.memory_mib.is_some(),
            self.disk_gib.is_some(),
        ];
        match (&self.flavor, self.vcpus, self.memory_mib, self.disk_gib) {
            (Some(_), None, None, None) => Ok(RequestedSize::Flavor),
            (Some(_), ..) => {
                Err("give either a flavor or vcpus/memory_mib/disk_gib, not both".into())
            }
            (None, Some(vcpus), Some(memory_mib), Some(disk_gib)) => Ok(RequestedSize::Explicit {
                vcpus,
                memory_mib,
                disk_gib,
            }),
            (None, ..) if explicit.iter().any(|x| *x) => {
                Err("vcpus, memory_mib and disk_gib must all be given (or a flavor)".into())
            }
            (None, ..) => Err("a flavor or vcpus/memory_mib/disk_gib is required".into()),
        }
    }
}

/// What a server is doing, as users see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServerStatus {
    /// Placed on a host; its disk and QEMU are being prepared for the first boot.
    Building,
    Running,
    /// Asked to stop; the guest is powering down.
    Stopping,
    Stopped,
    /// Asked to reboot; not yet confirmed by the host.
    Rebooting,
    /// Asked to be deleted; the host is cleaning up.
    Deleting,
    /// Something failed; see `fault`.
    Error,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Rebooting => "rebooting",
            Self::Deleting => "deleting",
            Self::Error => "error",
        }
    }
}

impl std::fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    pub project: ProjectId,
    pub status: ServerStatus,
    /// Why the server is in `error`.
    pub fault: Option<String>,
    pub image: ImageId,
    pub flavor: Option<FlavorId>,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub host: Option<HostId>,
    pub created_at: DateTime<Utc>,
    /// When the host last saw the guest's QEMU start running.
    pub launched_at: Option<DateTime<Utc>>,
}
