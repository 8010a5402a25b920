//! The background task that enforces rental terms over time: leases that
//! run out, and traffic quotas that a new month lifts.
//!
//! With several controllers on one database, one of them sweeps at a time:
//! the one holding the `terms_keeper` leader lease, renewed on every tick.
//! If it dies, another takes over when the lease expires.

use crate::http::AppState;
use std::time::Duration;

/// The leader lease of the terms keeper.
pub const LEADER_LEASE: &str = "terms_keeper";

/// The lease lasts this many sweep intervals, so one late tick keeps it.
const LEASE_TICKS: u32 = 3;

/// Checks leases and traffic states every `sweep_interval`, forever, while
/// this controller holds the leader lease.
pub async fn run(state: AppState) {
    let holder = leader_id();
    let ttl = state.rental.sweep_interval.max(Duration::from_secs(1)) * LEASE_TICKS;
    let mut tick = tokio::time::interval(state.rental.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    // Old audit records are purged by the same leader, now and then.
    let mut audit_retention = crate::audit::RetentionSweeper::default();
    loop {
        tick.tick().await;
        match state
            .store
            .hold_leader_lease(LEADER_LEASE, &holder, ttl)
            .await
        {
            Ok(holds) => {
                if holds != leading {
                    tracing::info!(holder = %holder, leading = holds, "terms keeper leadership changed");
                    leading = holds;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the terms keeper's lease; retrying");
                continue;
            }
        }
        if !leading {
            continue;
        }
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "cannot enforce rental terms; retrying");
        }
        audit_retention.sweep_if_due(&state).await;
    }
}

/// Who this controller is in leader leases: host name, process, and a
/// random part (a restarted process is a new holder).
fn leader_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}:{}:{}",
        host.trim(),
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    )
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
