//! Hosts as administrators see them, and their switch for new servers.

use super::AppError;
use crate::scheduler::PlacementSettings;
use crate::store::hosts::HostLoad;
use crate::store::Store;
use chrono::{DateTime, Utc};
use nubis_api::hosts::{HostAllocation, HostState, HostSummary, MAX_DISABLED_REASON};
use nubis_api::HostId;

/// The administrators' view of one host's load at `now`.
pub fn summary(load: HostLoad, settings: &PlacementSettings, now: DateTime<Utc>) -> HostSummary {
    let h = load.host;
    HostSummary {
        state: if settings.is_up(h.last_seen, now) {
            HostState::Up
        } else {
            HostState::Down
        },
        id: h.id,
        name: h.name,
        url: h.url,
        enabled: h.enabled,
        disabled_reason: h.disabled_reason,
        vcpus: h.vcpus,
        memory_mib: h.memory_mib,
        disk_gib: h.disk_gib,
        accel: h.accel,
        cpu_model: h.cpu_model,
        allocated: HostAllocation {
            vcpus: load.used_vcpus,
            memory_mib: load.used_memory_mib,
            disk_gib: load.used_disk_gib,
        },
        instances: load.instances,
        last_seen: h.last_seen,
    }
}

/// Every host, by name (one set-based read, whatever the number of hosts).
pub async fn list(
    store: &Store,
    settings: &PlacementSettings,
) -> Result<Vec<HostSummary>, AppError> {
    let now = Utc::now();
    Ok(store
        .host_loads()
        .await?
        .into_iter()
        .map(|l| summary(l, settings, now))
        .collect())
}

/// One host; `NotFound` if there is none.
pub async fn show(
    store: &Store,
    settings: &PlacementSettings,
    id: HostId,
) -> Result<HostSummary, AppError> {
    Ok(summary(store.host_load(id).await?, settings, Utc::now()))
}

/// Disables (`enabled = false`, with an optional reason) or enables a host.
/// Servers already on it stay; only placement skips it.
pub async fn set_enabled(
    store: &Store,
    settings: &PlacementSettings,
    id: HostId,
    enabled: bool,
    reason: Option<&str>,
) -> Result<HostSummary, AppError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if let Some(r) = reason {
        if r.chars().count() > MAX_DISABLED_REASON || r.chars().any(char::is_control) {
            return Err(AppError::Invalid(format!(
                "reason must be at most {MAX_DISABLED_REASON} characters without control characters"
            )));
        }
    }
    store.set_host_enabled(id, enabled, reason).await?;
    show(store, settings, id).await
}
