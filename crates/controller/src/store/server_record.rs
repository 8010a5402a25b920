//! A server row as stored: desired and observed state, the status users see
//! derived from both, and its decoding from a database row.

use super::rows::{count, flag, json_or_default, parse, parse_opt, time, time_opt};
use super::{StoreError, StoreResult};
use nubis_api::agent::{NetworkLimits, ObservedPower, PowerState};
use nubis_api::bandwidth::Bandwidth;
use nubis_api::leases::{Lease, LeaseState};
use nubis_api::networks::ServerAddress;
use nubis_api::servers::{Server, ServerStatus};
use nubis_api::traffic::{QuotaPolicy, TrafficQuota, TrafficState};
use nubis_api::{FlavorId, HostId, ImageId, ProjectId, ServerId};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A server row: desired and observed state.
#[derive(Clone, Debug)]
pub struct ServerRecord {
    pub id: ServerId,
    pub project: ProjectId,
    pub name: String,
    pub image: ImageId,
    pub flavor: Option<FlavorId>,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub host: Option<HostId>,
    pub power: PowerState,
    pub reboot_generation: u64,
    pub deleting: bool,
    pub observed_power: Option<ObservedPower>,
    pub observed_reboot_generation: u64,
    pub fault: Option<String>,
    pub launched_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub key_name: Option<String>,
    /// The public key as it was when the server was created.
    pub key_data: Option<String>,
    /// Base64.
    pub user_data: Option<String>,
    pub config_drive: bool,
    pub bandwidth: Bandwidth,
    pub traffic_quota: Option<TrafficQuota>,
    pub traffic_state: TrafficState,
    pub traffic_reason: Option<String>,
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub lease_exempt: bool,
    /// The lease ran out and the server was stopped for it.
    pub lease_expired: bool,
    /// The server's ISO image is in its CD-ROM drive (until ejected).
    pub cdrom_attached: bool,
}

impl ServerRecord {
    /// The status users see, derived from desired and observed state.
    pub fn status(&self) -> ServerStatus {
        use ObservedPower as O;
        if self.deleting {
            return ServerStatus::Deleting;
        }
        match (self.power, self.observed_power) {
            (_, Some(O::Error)) => ServerStatus::Error,
            (PowerState::Running, Some(O::Running))
                if self.reboot_generation > self.observed_reboot_generation =>
            {
                ServerStatus::Rebooting
            }
            (PowerState::Running, Some(O::Running)) => ServerStatus::Running,
            // Never launched yet: the first boot is being prepared.
            (PowerState::Running, _) if self.launched_at.is_none() => ServerStatus::Building,
            // Started again after a stop: shown stopped until the host confirms.
            (PowerState::Running, _) => ServerStatus::Stopped,
            (PowerState::Stopped, Some(O::Running | O::Creating)) => ServerStatus::Stopping,
            (PowerState::Stopped, _) => ServerStatus::Stopped,
        }
    }

    /// What the host must enforce on the server's NICs: its bandwidth, capped
    /// at `throttle` while throttled, or nothing at all while suspended.
    pub fn network_limits(&self, throttle: nubis_api::bandwidth::RateLimit) -> NetworkLimits {
        match self.traffic_state {
            TrafficState::Normal => NetworkLimits {
                bandwidth: self.bandwidth,
                suspended: false,
            },
            TrafficState::Throttled => NetworkLimits {
                bandwidth: self.bandwidth.capped(throttle),
                suspended: false,
            },
            TrafficState::Suspended => NetworkLimits {
                bandwidth: self.bandwidth,
                suspended: true,
            },
        }
    }

    /// The lease as users see it; deletion follows `grace` after expiry.
    pub fn lease(&self, grace: chrono::Duration) -> Option<Lease> {
        self.lease_expires_at.map(|expires_at| Lease {
            expires_at,
            delete_at: expires_at + grace,
            state: if self.lease_expired {
                LeaseState::Expired
            } else {
                LeaseState::Active
            },
            exempt: self.lease_exempt,
        })
    }

    /// The API view, given the server's addresses, DNS name and group names,
    /// and the operator's lease grace period.
    pub fn to_api(
        &self,
        addresses: Vec<ServerAddress>,
        dns_name: Option<String>,
        security_groups: Vec<String>,
        lease_grace: chrono::Duration,
    ) -> Server {
        let status = self.status();
        Server {
            id: self.id,
            name: self.name.clone(),
            project: self.project,
            status,
            // Tenants see the gist; paths and URLs stay in the logs.
            fault: if status == ServerStatus::Error {
                self.fault.as_deref().map(crate::redact::for_tenants)
            } else {
                None
            },
            image: self.image,
            flavor: self.flavor,
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
            host: self.host,
            created_at: self.created_at,
            launched_at: self.launched_at,
            addresses,
            dns_name,
            key_name: self.key_name.clone(),
            config_drive: self.config_drive,
            security_groups,
            bandwidth: self.bandwidth,
            traffic_quota: self.traffic_quota,
            traffic_state: self.traffic_state,
            traffic_reason: self.traffic_reason.clone(),
            lease: self.lease(lease_grace),
            cdrom_attached: self.cdrom_attached,
        }
    }
}

pub(super) fn power_str(p: PowerState) -> &'static str {
    match p {
        PowerState::Running => "running",
        PowerState::Stopped => "stopped",
    }
}

pub(super) fn observed_str(p: ObservedPower) -> &'static str {
    match p {
        ObservedPower::Creating => "creating",
        ObservedPower::Running => "running",
        ObservedPower::Stopped => "stopped",
        ObservedPower::Error => "error",
    }
}

pub(super) fn server_from_row(row: &AnyRow) -> StoreResult<ServerRecord> {
    let power: String = row.try_get("power")?;
    let observed: Option<String> = row.try_get("observed_power")?;
    Ok(ServerRecord {
        id: parse(row, "id")?,
        project: parse(row, "project_id")?,
        name: row.try_get("name")?,
        image: parse(row, "image_id")?,
        flavor: parse_opt(row, "flavor_id")?,
        vcpus: count(row, "vcpus")?,
        memory_mib: count(row, "memory_mib")?,
        disk_gib: count(row, "disk_gib")?,
        host: parse_opt(row, "host_id")?,
        power: match power.as_str() {
            "stopped" => PowerState::Stopped,
            _ => PowerState::Running,
        },
        reboot_generation: count(row, "reboot_generation")?,
        deleting: flag(row, "deleting")?,
        observed_power: observed.map(|o| match o.as_str() {
            "creating" => ObservedPower::Creating,
            "running" => ObservedPower::Running,
            "stopped" => ObservedPower::Stopped,
            _ => ObservedPower::Error,
        }),
        observed_reboot_generation: count(row, "observed_reboot_generation")?,
        fault: row.try_get("fault")?,
        launched_at: time_opt(row, "launched_at")?,
        created_at: time(row, "created_at")?,
        key_name: row.try_get("key_name")?,
        key_data: row.try_get("key_data")?,
        user_data: row.try_get("user_data")?,
        config_drive: flag(row, "config_drive")?,
        bandwidth: json_or_default(row, "bandwidth")?,
        traffic_quota: traffic_quota_from_row(row)?,
        traffic_state: {
            let s: String = row.try_get("traffic_state")?;
            TrafficState::parse(&s)
                .ok_or_else(|| StoreError::Corrupt(format!("bad traffic_state '{s}'")))?
        },
        traffic_reason: row.try_get("traffic_reason")?,
        lease_expires_at: time_opt(row, "lease_expires_at")?,
        lease_exempt: flag(row, "lease_exempt")?,
        lease_expired: flag(row, "lease_expired")?,
        cdrom_attached: flag(row, "cdrom_attached")?,
    })
}

fn traffic_quota_from_row(row: &AnyRow) -> StoreResult<Option<TrafficQuota>> {
    let bytes: Option<i64> = row.try_get("traffic_quota_bytes")?;
    let policy: Option<String> = row.try_get("traffic_policy")?;
    Ok(match (bytes, policy) {
        (Some(b), Some(p)) => Some(TrafficQuota::from_bytes(
            b.max(0) as u64,
            QuotaPolicy::parse(&p)
                .ok_or_else(|| StoreError::Corrupt(format!("bad traffic_policy '{p}'")))?,
        )),
        _ => None,
    })
}
