//! Draining a host: disable it (no new servers) and move every server off
//! it — running ones live, stopped ones cold — with the scheduler choosing
//! each target. Idempotent: a server already moving off is reported, not
//! moved again, so draining twice starts moves only for what is left.

use super::moves::{self, MoveError};
use super::AppError;
use crate::scheduler::PlacementSettings;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use nubis_api::migrations::{Drain, MigrationKind, Unplaced};
use nubis_api::servers::ServerStatus;
use nubis_api::HostId;

/// The reason a drained host carries when the caller gives none.
pub const DEFAULT_REASON: &str = "draining";

/// How one server leaves a drained host, from its status.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Start a move of this kind.
    Move(MigrationKind),
    /// Leave it, for this reason.
    Skip(String),
}

/// What to do with a server on the drained host (not already moving), from
/// its status and fault.
pub fn plan(status: ServerStatus, fault: Option<&str>) -> Plan {
    match status {
        ServerStatus::Running => Plan::Move(MigrationKind::Live),
        ServerStatus::Stopped => Plan::Move(MigrationKind::Cold),
        ServerStatus::Deleting => Plan::Skip("being deleted".into()),
        ServerStatus::Error => Plan::Skip(format!(
            "in error ({}); repair or delete it, or stop it and drain again",
            fault.unwrap_or("no fault recorded")
        )),
        other => Plan::Skip(format!(
            "it is {other}; drain again once it is running or stopped"
        )),
    }
}

/// Drains `host`: disables it with `reason` (default: the reason it has
/// when already disabled, else [`DEFAULT_REASON`]), then starts a move for
/// every server on it that is not moving already.
/// A down host is refused (its QEMUs cannot be asked for anything:
/// evacuate it instead); an unknown host is `Store(NotFound)`.
pub async fn drain(
    store: &Store,
    placement: &PlacementSettings,
    host: HostId,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Drain, MoveError> {
    let load = store.host_load(host).await?;
    if !placement.is_up(load.host.last_seen, now) {
        return Err(MoveError::Conflict(format!(
            "host '{}' is down: its servers cannot be moved live; evacuate it instead \
             (nubis host evacuate {})",
            load.host.name, load.host.name
        )));
    }
    // Draining again without a reason keeps the one the host has.
    let kept = (!load.host.enabled)
        .then_some(load.host.disabled_reason.as_deref())
        .flatten();
    let reason = reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .or(kept)
        .unwrap_or(DEFAULT_REASON);
    let summary = super::hosts::set_enabled(store, placement, host, false, Some(reason))
        .await
        .map_err(|e| match e {
            AppError::Store(e) => MoveError::Store(e),
            other => MoveError::BadRequest(other.to_string()),
        })?;
    let running = store.running_moves_of_host(host).await?;
    let moving = running
        .iter()
        .filter(|m| m.migration.source_host == host)
        .map(|m| m.migration.clone())
        .collect();
    let mut out = Drain {
        host: summary,
        started: Vec::new(),
        moving,
        skipped: Vec::new(),
    };
    for server in store.servers_on_host(host).await? {
        let coming = running
            .iter()
            .any(|m| m.migration.server == server.id && m.migration.target_host == host);
        let plan = if coming {
            Plan::Skip("moving to this host; drain again once it has arrived".into())
        } else {
            plan(server.status(), server.fault.as_deref())
        };
        let kind = match plan {
            Plan::Move(kind) => kind,
            Plan::Skip(reason) => {
                out.skipped.push(Unplaced {
                    server: server.id,
                    reason,
                });
                continue;
            }
        };
        // Each move claims room on its target, so each reads the loads
        // anew (inside `start_migration`).
        match moves::start_migration(store, server.id, server.project, kind, None, now, placement)
            .await
        {
            Ok(m) => out.started.push(m.migration),
            Err(
                MoveError::Conflict(reason)
                | MoveError::NoHost(reason)
                | MoveError::BadRequest(reason)
                | MoveError::Store(StoreError::Conflict(reason)),
            ) => out.skipped.push(Unplaced {
                server: server.id,
                reason,
            }),
            // The target filled up since it was chosen (as an evacuation
            // skips it): the other servers are still tried.
            Err(MoveError::Store(StoreError::NoValidHost(e))) => out.skipped.push(Unplaced {
                server: server.id,
                reason: e.to_string(),
            }),
            // Deleted meanwhile: no longer on the host.
            Err(MoveError::Store(StoreError::NotFound)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_servers_move_live_stopped_ones_cold_the_rest_stay() {
        use ServerStatus as S;
        assert_eq!(plan(S::Running, None), Plan::Move(MigrationKind::Live));
        assert_eq!(plan(S::Stopped, None), Plan::Move(MigrationKind::Cold));
        assert!(matches!(plan(S::Error, Some("disk missing")),
            Plan::Skip(r) if r.contains("in error (disk missing)")));
        assert!(matches!(plan(S::Building, None), Plan::Skip(r) if r.contains("it is building")));
        assert!(matches!(plan(S::Rebooting, None), Plan::Skip(r) if r.contains("rebooting")));
        assert!(matches!(plan(S::Stopping, None), Plan::Skip(r) if r.contains("stopping")));
        assert_eq!(plan(S::Deleting, None), Plan::Skip("being deleted".into()));
    }
}
