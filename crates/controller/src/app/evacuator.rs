//! `--auto-evacuate SECONDS`: a background sweep that evacuates hosts down
//! for that long. With several controllers on one database only the holder
//! of the `evacuator` leader lease acts, so a host is evacuated once.

use crate::http::AppState;
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
/// servers. The grace period is at least the heartbeat timeout: a host is
/// never evacuated before it counts as down.
pub async fn sweep(state: &AppState, after: Duration) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let grace = after.max(state.placement.host_down_after);
    let placement = crate::scheduler::PlacementSettings {
        host_down_after: grace,
        ..state.placement
    };
    for host in super::moves::hosts_to_evacuate(&state.store, now, grace).await? {
        let done = super::moves::evacuate(&state.store, host, now, &placement).await?;
        tracing::info!(
            host = %host,
            moved = done.evacuation.migrations.len(),
            unplaced = done.evacuation.unplaced.len(),
            "evacuated a down host"
        );
        state.desired_state_changed_on(done.concerned);
    }
    Ok(())
}
