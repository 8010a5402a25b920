//! The background task that enforces rental terms over time: leases that
//! run out, and traffic quotas that a new month lifts.

use crate::http::AppState;

/// Checks leases and traffic states every `sweep_interval`, forever.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.rental.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "cannot enforce rental terms; retrying");
        }
    }
}

/// One pass; wakes the agents when anything changed.
pub async fn sweep(state: &AppState) -> anyhow::Result<()> {
    let now = state.clock.now();
    let leases = state
        .store
        .sweep_leases(now, state.rental.lease_grace)
        .await?;
    let traffic = state.store.recheck_traffic_states(now).await?;
    if !leases.stopped.is_empty() || !leases.deleted.is_empty() || !traffic.is_empty() {
        state.desired_state_changed();
    }
    Ok(())
}
