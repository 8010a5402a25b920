//! Events: what happened to a server and why (quota throttling, suspension,
//! lease expiry), kept after the server is gone.

use crate::ServerId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of thing happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    TrafficThrottled,
    TrafficSuspended,
    TrafficRestored,
    BandwidthChanged,
    QuotaChanged,
    LeaseRenewed,
    LeaseExempted,
    LeaseExpired,
    LeaseDeleted,
    /// Placed on a host ("scheduled on host X").
    Scheduled,
    Migrating,
    Migrated,
    MigrationFailed,
    Evacuated,
    Rebuilt,
    Fenced,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrafficThrottled => "traffic_throttled",
            Self::TrafficSuspended => "traffic_suspended",
            Self::TrafficRestored => "traffic_restored",
            Self::BandwidthChanged => "bandwidth_changed",
            Self::QuotaChanged => "quota_changed",
            Self::LeaseRenewed => "lease_renewed",
            Self::LeaseExempted => "lease_exempted",
            Self::LeaseExpired => "lease_expired",
            Self::LeaseDeleted => "lease_deleted",
            Self::Scheduled => "scheduled",
            Self::Migrating => "migrating",
            Self::Migrated => "migrated",
            Self::MigrationFailed => "migration_failed",
            Self::Evacuated => "evacuated",
            Self::Rebuilt => "rebuilt",
            Self::Fenced => "fenced",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::TrafficThrottled,
            Self::TrafficSuspended,
            Self::TrafficRestored,
            Self::BandwidthChanged,
            Self::QuotaChanged,
            Self::LeaseRenewed,
            Self::LeaseExempted,
            Self::LeaseExpired,
            Self::LeaseDeleted,
            Self::Scheduled,
            Self::Migrating,
            Self::Migrated,
            Self::MigrationFailed,
            Self::Evacuated,
            Self::Rebuilt,
            Self::Fenced,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One event (`GET /v1/servers/{id}/events`, `GET /v1/events`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerEvent {
    pub server: ServerId,
    pub server_name: String,
    pub kind: EventKind,
    /// A sentence for people.
    pub message: String,
    pub time: DateTime<Utc>,
}
