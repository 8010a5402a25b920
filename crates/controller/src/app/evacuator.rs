//! `--auto-evacuate SECONDS`: a background sweep that evacuates hosts down
//! for that long. With several controllers on one database only the holder
//! of the `evacuator` leader lease acts, so a host is evacuated once.

use super::moves::{evacuate, hosts_to_evacuate, Evacuated, MoveError};
use crate::http::AppState;
use crate::scheduler::PlacementSettings;
use crate::store::Store;
use nubis_api::HostId;
use std::time::Duration;

/// The leader lease of the evacuator.
pub const LEADER_LEASE: &str = "evacuator";

/// How often the sweep looks for down hosts.
const TICK: Duration = Duration::from_secs(5);

/// Evacuates every host silent for longer than `after`, forever.
pub async fn run(state: AppState, after: Duration) {
    let holder = format!("{}:{}", std::process::id(), uuid::Uuid::now_v7().simple());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state
            .store
            .hold_leader_lease(LEADER_LEASE, &holder, TICK * 3)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the evacuator's lease; retrying");
                continue;
            }
        }
        if let Err(e) = sweep(&state, after).await {
            tracing::warn!(error = %e, "cannot evacuate down hosts; retrying");
        }
    }
}

/// One pass: evacuates each host down longer than `after` that still has
/// servers (see [`evacuate_down_hosts`]) and wakes the agents concerned.
pub async fn sweep(state: &AppState, after: Duration) -> anyhow::Result<()> {
    let done =
        evacuate_down_hosts(&state.store, &state.placement, after, chrono::Utc::now()).await?;
    for (host, done) in done {
        match done {
            Ok(done) => {
                tracing::info!(
                    host = %host,
                    moved = done.evacuation.migrations.len(),
                    unplaced = done.evacuation.unplaced.len(),
                    "evacuated a down host"
                );
                state.desired_state_changed_on(done.concerned);
            }
            // Moves it committed before failing: their hosts must hear.
            Err(e) => {
                tracing::warn!(host = %host, error = %e, "cannot evacuate a down host; retrying");
                state.desired_state_changed();
            }
        }
    }
    Ok(())
}

/// Evacuates each host silent for longer than `after` that still has
/// servers. The grace period is at least the heartbeat timeout: a host is
/// never evacuated before it counts as down. Targets are chosen by the
/// operator's usual rule (`placement`), never the grace period: a host
/// silent for less than the grace is still down, and gets nothing. One
/// host failing (e.g. it came back meanwhile) does not stop the others.
pub async fn evacuate_down_hosts(
    store: &Store,
    placement: &PlacementSettings,
    after: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(HostId, Result<Evacuated, MoveError>)>, MoveError> {
    let grace = PlacementSettings {
        host_down_after: after.max(placement.host_down_after),
        ..*placement
    };
    let mut out = Vec::new();
    for host in hosts_to_evacuate(store, now, &grace).await? {
        out.push((host, evacuate(store, host, now, placement).await));
    }
    Ok(out)
}
