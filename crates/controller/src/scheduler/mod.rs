//! Placement: which host a new server goes to, as Nova's filter scheduler.
//!
//! [`filters`] drop the hosts that cannot take the server (down, disabled,
//! wrong accelerator, no room under the overcommit ratios, against the
//! server group's policy); [`weighers`] order the rest (spread: most free
//! memory first; pack: least free first). The result is a list of
//! candidates, best first: the store takes the claim on the first one that
//! still fits once its row is locked, inside the transaction that creates
//! the server (see `store::placement`), so concurrent creates never overbook.
//!
//! Everything here is pure (no store, no clock): loads and time come in.

pub mod filters;
pub mod weighers;

use crate::store::hosts::HostLoad;
use chrono::{DateTime, Utc};
use nubis_api::agent::Accelerator;
use nubis_api::server_groups::GroupPolicy;
use nubis_api::HostId;
use std::collections::HashSet;
use std::time::Duration;

/// A host not heard from (long poll or report) for this long is `down`:
/// it gets no new servers.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of each resource may be promised relative to what a host has
/// (Nova's `cpu_allocation_ratio`, `ram_allocation_ratio`,
/// `disk_allocation_ratio`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overcommit {
    pub cpu: f64,
    pub memory: f64,
    pub disk: f64,
}

impl Default for Overcommit {
    /// Nova's defaults: 4 vCPUs per core, no memory or disk overcommit.
    fn default() -> Self {
        Self {
            cpu: 4.0,
            memory: 1.0,
            disk: 1.0,
        }
    }
}

/// How candidates are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Weigher {
    /// Most free memory first: servers spread across hosts (Nova's default).
    #[default]
    Spread,
    /// Least free memory first (that still fits): hosts fill up one by one.
    Pack,
}

/// The operator's placement settings (controller flags).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlacementSettings {
    pub overcommit: Overcommit,
    pub weigher: Weigher,
    /// `--host-down-after`: a host silent for longer is `down`.
    pub host_down_after: Duration,
}

impl Default for PlacementSettings {
    fn default() -> Self {
        Self {
            overcommit: Overcommit::default(),
            weigher: Weigher::default(),
            host_down_after: HEARTBEAT_TIMEOUT,
        }
    }
}

impl PlacementSettings {
    /// Whether a host last seen at `last_seen` is up at `now`.
    pub fn is_up(&self, last_seen: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now.signed_duration_since(last_seen)
            .to_std()
            // Seen "in the future" (clock skew between controllers): up.
            .map(|age| age <= self.host_down_after)
            .unwrap_or(true)
    }
}

/// What a new server needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// The server group a new server joins, as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupContext {
    pub policy: GroupPolicy,
    /// Hosts its current members are on.
    pub member_hosts: HashSet<HostId>,
}

/// Everything the filters need to know about one create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementRequest {
    pub demand: Demand,
    /// Only hosts with this accelerator.
    pub accel: Option<Accelerator>,
    pub group: Option<GroupContext>,
}

impl PlacementRequest {
    /// A request for `demand` with no other constraint.
    pub fn new(demand: Demand) -> Self {
        Self {
            demand,
            accel: None,
            group: None,
        }
    }
}

/// Why no host was chosen (Nova's NoValidHost), in words for the user.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error("no host is up to run servers")]
    NoHosts,
    #[error(
        "no host has room for {vcpus} vCPUs, {memory_mib} MiB memory and {disk_gib} GiB disk{why}"
    )]
    NoCapacity {
        vcpus: u64,
        memory_mib: u64,
        disk_gib: u64,
        /// What else ruled hosts out (", and ...") — empty when only room did.
        why: String,
    },
    /// The one host a claim was for (a move's target) cannot take it.
    #[error("host {host} cannot take {vcpus} vCPUs, {memory_mib} MiB memory and {disk_gib} GiB disk: {why}")]
    HostRefused {
        host: String,
        vcpus: u64,
        memory_mib: u64,
        disk_gib: u64,
        why: String,
    },
}

/// The hosts that can take `request`, best first; an error saying why when
/// there is none.
pub fn candidates(
    loads: &[HostLoad],
    request: &PlacementRequest,
    settings: &PlacementSettings,
    now: DateTime<Utc>,
) -> Result<Vec<HostId>, PlacementError> {
    best_candidates(loads, request, settings, now, loads.len())
}

/// The first `k` of [`candidates`] (the rest left unsorted).
pub fn best_candidates(
    loads: &[HostLoad],
    request: &PlacementRequest,
    settings: &PlacementSettings,
    now: DateTime<Utc>,
    k: usize,
) -> Result<Vec<HostId>, PlacementError> {
    let up: Vec<&HostLoad> = loads
        .iter()
        .filter(|l| settings.is_up(l.host.last_seen, now))
        .collect();
    if up.is_empty() {
        return Err(PlacementError::NoHosts);
    }
    let outcome = filters::apply(&up, request, &settings.overcommit);
    if outcome.passed.is_empty() {
        let d = request.demand;
        return Err(PlacementError::NoCapacity {
            vcpus: d.vcpus,
            memory_mib: d.memory_mib,
            disk_gib: d.disk_gib,
            why: outcome.explain(),
        });
    }
    Ok(weighers::best(
        outcome.passed,
        settings.weigher,
        &settings.overcommit,
        k,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nubis_api::agent::Host;

    /// A 2-vCPU, 100 GiB host with `mem` MiB of which `used_mem` are taken,
    /// last seen `seen_secs_ago`.
    pub(crate) fn load(name: &str, mem: u64, used_mem: u64, seen_secs_ago: i64) -> HostLoad {
        HostLoad {
            host: Host {
                id: HostId::new(),
                name: name.into(),
                url: String::new(),
                vcpus: 2,
                memory_mib: mem,
                disk_gib: 100,
                accel: Accelerator::Tcg,
                last_seen: Utc::now() - chrono::Duration::seconds(seen_secs_ago),
                cpu_model: String::new(),
                enabled: true,
                disabled_reason: None,
            },
            used_vcpus: 0,
            used_memory_mib: used_mem,
            used_disk_gib: 0,
            instances: 0,
        }
    }

    pub(crate) const D: Demand = Demand {
        vcpus: 1,
        memory_mib: 512,
        disk_gib: 1,
    };
}
