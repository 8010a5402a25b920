//! Live migration, the controller's part: what the two hosts' move reports
//! mean for a live move. The move itself (its row, the placement, the
//! target's `Arrival::Live`, the source's `Departure`, failing it back to
//! the source) is `app::moves`; this module decides, and the move code
//! calls it for moves whose arrival is live:
//!
//! - the target reports `working` with its endpoints: they are stored
//!   ([`Store::record_live_target`]) and go into the source's
//!   `Departure::live` ([`Store::live_targets`]), which starts the
//!   source's mirror and migration;
//! - the source reports `arrived`: the switch-over happened; the move is
//!   done, the `migrated` event carries the downtime QEMU measured;
//! - either end reports `failed`: the move fails (the server stays on the
//!   source, still running there; the target's leftovers are released);
//! - the target reporting `arrived` is not the end: only the source knows
//!   that QEMU completed the migration.
//!
//! [`Store::record_live_target`]: crate::store::Store::record_live_target
//! [`Store::live_targets`]: crate::store::Store::live_targets

use crate::store::moves::MoveRecord;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use nubis_api::agent::{Departure, LiveTarget, MoveProgress, MoveReport, MoveRole};
use nubis_api::events::EventKind;

/// What one report about a live move asks the controller to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveStep {
    /// Nothing new.
    Nothing,
    /// The target waits at these endpoints: tell the source.
    TargetReady(LiveTarget),
    /// The guest runs on the target: the move is done.
    Done { downtime_ms: u64 },
    /// One end gave up: fail the move back to the source.
    Failed(String),
}

/// Reads a host's report about its end of a live move.
pub fn live_step(seen: &MoveReport) -> LiveStep {
    match (seen.role, seen.progress) {
        (_, MoveProgress::Failed) => {
            LiveStep::Failed(seen.error.clone().unwrap_or_else(|| match seen.role {
                MoveRole::Arrival => "the target host gave up".to_owned(),
                MoveRole::Departure => "the source host gave up".to_owned(),
            }))
        }
        (MoveRole::Arrival, MoveProgress::Working) => match &seen.live {
            Some(target) if !target.migration_uri.is_empty() && !target.nbd_uri.is_empty() => {
                LiveStep::TargetReady(target.clone())
            }
            _ => LiveStep::Nothing,
        },
        (MoveRole::Departure, MoveProgress::Arrived) => LiveStep::Done {
            downtime_ms: seen.downtime_ms.unwrap_or(0),
        },
        _ => LiveStep::Nothing,
    }
}

/// The `migrated` event's message for a live move that ended on `host`.
pub fn migrated_message(host: &str, downtime_ms: u64) -> String {
    format!("live migration done: the server runs on host {host}; downtime {downtime_ms} ms")
}

/// Whose desired state a report about a live move changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveChange {
    Nothing,
    /// The source's departure (the target's endpoints) only.
    Source,
    /// The move ended (done or failed): every host it concerns.
    Move,
}

/// Acts on one host's report about its end of live move `m` (called by
/// `app::moves::apply_report`). Whose desired state changed.
pub async fn apply_live_report(
    store: &Store,
    m: &MoveRecord,
    seen: &MoveReport,
    now: DateTime<Utc>,
) -> Result<LiveChange, StoreError> {
    let id = m.migration.id;
    let ended = |yes: bool| {
        if yes {
            LiveChange::Move
        } else {
            LiveChange::Nothing
        }
    };
    match live_step(seen) {
        LiveStep::Nothing => Ok(LiveChange::Nothing),
        LiveStep::TargetReady(target) => Ok(if store.record_live_target(id, &target).await? {
            LiveChange::Source
        } else {
            LiveChange::Nothing
        }),
        LiveStep::Done { downtime_ms } => {
            let target = store.host(m.migration.target_host).await?.name;
            let message = migrated_message(&target, downtime_ms);
            let done = store
                .finish_move(id, now, Some(downtime_ms), (EventKind::Migrated, &message))
                .await?;
            store.forget_live_target(id).await?;
            Ok(ended(done))
        }
        LiveStep::Failed(error) => {
            let failed = store.fail_move(id, now, &error, false).await?;
            store.forget_live_target(id).await?;
            Ok(ended(failed))
        }
    }
}

/// Fills in the target's endpoints in a host's live departures (called by
/// `app::moves::host_moves`); `live_moves` are the migration ids of its
/// departures that are live.
pub async fn fill_live_departures(
    store: &Store,
    departures: &mut [Departure],
    live_moves: &[(nubis_api::ServerId, nubis_api::MigrationId)],
) -> Result<(), StoreError> {
    if live_moves.is_empty() {
        return Ok(());
    }
    let ids: Vec<_> = live_moves.iter().map(|(_, id)| *id).collect();
    let targets = store.live_targets(&ids).await?;
    for departure in departures.iter_mut() {
        let migration = live_moves
            .iter()
            .find(|(server, _)| *server == departure.id)
            .map(|(_, id)| id);
        if let Some(target) = migration.and_then(|id| targets.get(id)) {
            departure.live = Some(target.clone());
        }
    }
    Ok(())
}

/// The servers `host` is receiving live right now. Until the switch-over
/// their guests run on the source, so the target's view of them (a QEMU
/// paused for the incoming state, or killed half-way) must not become
/// the servers' status or fault: the source's reports speak for them.
pub async fn arriving_live(
    store: &Store,
    host: nubis_api::HostId,
) -> Result<std::collections::HashSet<nubis_api::ServerId>, StoreError> {
    Ok(store
        .running_moves_of_host(host)
        .await?
        .into_iter()
        .filter(|m| {
            m.arrival == crate::store::moves::ArrivalKind::Live && m.migration.target_host == host
        })
        .map(|m| m.migration.server)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubis_api::ServerId;

    fn seen(role: MoveRole, progress: MoveProgress) -> MoveReport {
        MoveReport {
            id: ServerId::new(),
            generation: 2,
            role,
            progress,
            ..MoveReport::default()
        }
    }

    #[test]
    fn the_targets_endpoints_go_to_the_source() {
        let target = LiveTarget {
            migration_uri: "tcp:172.31.0.12:40002".into(),
            nbd_uri: "nbd://172.31.0.12:40001/disk0".into(),
        };
        let mut report = seen(MoveRole::Arrival, MoveProgress::Working);
        assert_eq!(live_step(&report), LiveStep::Nothing, "not ready yet");
        report.live = Some(target.clone());
        assert_eq!(live_step(&report), LiveStep::TargetReady(target));
    }

    #[test]
    fn only_the_source_ends_a_live_move() {
        assert_eq!(
            live_step(&seen(MoveRole::Arrival, MoveProgress::Arrived)),
            LiveStep::Nothing
        );
        let mut done = seen(MoveRole::Departure, MoveProgress::Arrived);
        done.downtime_ms = Some(215);
        assert_eq!(live_step(&done), LiveStep::Done { downtime_ms: 215 });
        assert_eq!(
            migrated_message("host-2", 215),
            "live migration done: the server runs on host host-2; downtime 215 ms"
        );
    }

    #[test]
    fn either_end_failing_fails_the_move() {
        let mut failed = seen(MoveRole::Departure, MoveProgress::Failed);
        failed.error = Some("migration failed: Broken pipe".into());
        assert_eq!(
            live_step(&failed),
            LiveStep::Failed("migration failed: Broken pipe".into())
        );
        assert_eq!(
            live_step(&seen(MoveRole::Arrival, MoveProgress::Failed)),
            LiveStep::Failed("the target host gave up".into())
        );
    }
}
