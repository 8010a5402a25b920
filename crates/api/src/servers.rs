//! Servers (virtual machines) as users see them.

use crate::networks::ServerAddress;
use crate::resources::{DiskGib, MemoryMib, Vcpus};
use crate::{FlavorId, HostId, ImageId, Name, ProjectId, ServerId};
use base64::Engine;
use std::net::Ipv4Addr;

/// The most user data accepted, decoded (Nova's limit).
pub const MAX_USER_DATA: usize = 65_535;

/// Most NICs a server may have.
pub const MAX_NICS: usize = 8;

/// One NIC of a new server, like `nova boot --nic net-id=...,v4-fixed-ip=...`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkRequest {
    /// Network id or name.
    pub network: String,
    #[serde(default)]
    #[schema(schema_with = crate::schema::optional_ipv4)]
    pub fixed_ip: Option<Ipv4Addr>,
}

/// User data: base64 in JSON (as in Nova and EC2), checked and decoded once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = Byte)]
pub struct UserData(Vec<u8>);

impl UserData {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<String> for UserData {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| format!("user_data must be base64: {e}"))?;
        if bytes.len() > MAX_USER_DATA {
            return Err(format!(
                "user_data is {} bytes; at most {MAX_USER_DATA} are accepted",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }
}

impl From<UserData> for String {
    fn from(u: UserData) -> String {
        base64::engine::general_purpose::STANDARD.encode(u.0)
    }
}
use crate::bandwidth::Bandwidth;
use crate::leases::{Lease, LeaseRequest};
use crate::traffic::{TrafficQuota, TrafficState};
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
    /// NICs; default: one on the project's `default` network.
    #[serde(default)]
    pub networks: Option<Vec<NetworkRequest>>,
    /// Key pair whose public key the guest authorizes.
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub user_data: Option<UserData>,
    /// Attach a config drive (`config-2`) with metadata and user data.
    #[serde(default)]
    pub config_drive: bool,
    /// Security groups (ids or names); default: the project's `default`.
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    /// Bandwidth limits; default: the flavor's, else unlimited.
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
    /// Monthly traffic quota; default: none.
    #[serde(default)]
    pub traffic_quota: Option<TrafficQuota>,
    /// Rent the server for a term; default: no lease.
    #[serde(default)]
    pub lease: Option<LeaseRequest>,
    /// Placement hints: a server group to join, an accelerator to require.
    #[serde(default)]
    pub scheduler_hints: Option<crate::server_groups::SchedulerHints>,
}

/// `PATCH /v1/servers/{id}`: change the rental terms of a server; absent
/// fields stay as they are, `"traffic_quota": null` removes the quota.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServer {
    /// New limits, applied to the running server at once (`{}` = unlimited).
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<TrafficQuota>)]
    pub traffic_quota: Option<Option<TrafficQuota>>,
}

/// Tells a field given as `null` (Some(None)) from an absent one (None).
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
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
    pub addresses: Vec<ServerAddress>,
    /// `<server>.<project>.<zone>`, resolving to the first address.
    pub dns_name: Option<String>,
    pub key_name: Option<String>,
    pub config_drive: bool,
    pub security_groups: Vec<String>,
    /// Bandwidth limits as asked for (unlimited directions are absent).
    pub bandwidth: Bandwidth,
    pub traffic_quota: Option<TrafficQuota>,
    /// `throttled` or `suspended` once the traffic quota is used up;
    /// `traffic_reason` says why.
    pub traffic_state: TrafficState,
    pub traffic_reason: Option<String>,
    pub lease: Option<Lease>,
    /// The server's ISO image is in its CD-ROM drive and boots first;
    /// `POST /v1/servers/{id}/eject` removes it.
    #[serde(default)]
    pub cdrom_attached: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_tells_null_from_absent() {
        let u: UpdateServer = serde_json::from_str(r#"{"traffic_quota":null}"#).unwrap();
        assert_eq!(u.traffic_quota, Some(None));
        let u: UpdateServer = serde_json::from_str(r#"{"bandwidth":{}}"#).unwrap();
        assert_eq!(
            (u.bandwidth, u.traffic_quota),
            (Some(Bandwidth::default()), None)
        );
        assert!(serde_json::from_str::<UpdateServer>(r#"{"name":"x"}"#).is_err());
    }
}
