//! Moving servers between hosts: cold and live migration, evacuation
//! (`POST /v1/servers/{id}/migrate`, `.../live-migrate`,
//! `GET /v1/servers/{id}/migrations`, `POST /v1/hosts/{id}/evacuate`).

use crate::{HostId, MigrationId, ServerId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/servers/{id}/migrate` and `.../live-migrate`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateServer {
    /// The target host, by id or name (admins only); absent: the scheduler
    /// picks one, never the server's current host.
    #[serde(default)]
    pub host: Option<String>,
}

/// How a server moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MigrationKind {
    /// A stopped server: its disk is copied (or found in a shared store).
    Cold,
    /// A running server, moved by QEMU migration.
    Live,
    /// Restarted elsewhere because its host is down.
    Evacuate,
}

impl MigrationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cold => "cold",
            Self::Live => "live",
            Self::Evacuate => "evacuate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Cold, Self::Live, Self::Evacuate]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a migration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MigrationState {
    Running,
    Done,
    Failed,
}

impl MigrationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Running, Self::Done, Self::Failed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One move of a server (`GET /v1/servers/{id}/migrations`, newest first).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Migration {
    pub id: MigrationId,
    pub server: ServerId,
    pub kind: MigrationKind,
    pub source_host: HostId,
    pub target_host: HostId,
    pub state: MigrationState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The pause QEMU reported (live migration only).
    pub downtime_ms: Option<u64>,
    /// Why the migration failed.
    pub error: Option<String>,
}

/// `POST /v1/hosts/{id}/evacuate` (admin): what happened to each server of
/// the down host.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evacuation {
    /// One migration per server placed elsewhere.
    pub migrations: Vec<Migration>,
    /// Servers that could not be placed, with the reason.
    pub unplaced: Vec<Unplaced>,
}

/// A server evacuation could not move.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unplaced {
    pub server: ServerId,
    pub reason: String,
}

/// `POST /v1/hosts/{id}/drain` (admin): the body is optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainHost {
    /// Why the host is disabled (at most 255 characters); absent:
    /// `draining`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What `POST /v1/hosts/{id}/drain` did: the host is disabled, and every
/// server on it is moving off (running ones live, stopped ones cold), was
/// already moving, or stays, with the reason.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Drain {
    /// The host, now disabled.
    pub host: crate::hosts::HostSummary,
    /// The moves this request started, one per server.
    pub started: Vec<Migration>,
    /// Moves off the host that were already under way (an earlier drain,
    /// a migration).
    pub moving: Vec<Migration>,
    /// Servers that stay on the host for now, with the reason.
    pub skipped: Vec<Unplaced>,
}
