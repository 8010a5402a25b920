//! Placement: which host a new server goes to.
//!
//! Filters (alive, enough room after overcommit) then weighs by free memory,
//! spreading servers across hosts like Nova's default RAM weigher.

use crate::store::hosts::HostLoad;
use chrono::{DateTime, Utc};
use nubis_api::HostId;
use std::time::Duration;

/// How much of each resource may be promised relative to what a host has.
#[derive(Clone, Copy, Debug)]
pub struct Overcommit {
    pub cpu: f64,
    pub memory: f64,
    pub disk: f64,
}

impl Default for Overcommit {
    /// Nova's defaults: 4 vCPUs per core, no memory overcommit; disks are thin
    /// qcow2 overlays, so they may be promised beyond the free space once over.
    fn default() -> Self {
        Self {
            cpu: 4.0,
            memory: 1.0,
            disk: 1.0,
        }
    }
}

/// What a new server needs.
#[derive(Clone, Copy, Debug)]
pub struct Demand {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// Why no host was chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error("no host is up to run servers")]
    NoHosts,
    #[error("no host has room for {vcpus} vCPUs, {memory_mib} MiB memory and {disk_gib} GiB disk")]
    NoCapacity {
        vcpus: u64,
        memory_mib: u64,
        disk_gib: u64,
    },
}

/// Picks the live host with the most free memory that fits `demand`.
pub fn place(
    loads: &[HostLoad],
    demand: Demand,
    overcommit: Overcommit,
    now: DateTime<Utc>,
    heartbeat_timeout: Duration,
) -> Result<HostId, PlacementError> {
    let alive: Vec<&HostLoad> = loads
        .iter()
        .filter(|l| {
            now.signed_duration_since(l.host.last_seen)
                .to_std()
                .map(|age| age <= heartbeat_timeout)
                .unwrap_or(true)
        })
        .collect();
    if alive.is_empty() {
        return Err(PlacementError::NoHosts);
    }
    let fits =
        |have: u64, ratio: f64, used: u64, want: u64| (have as f64 * ratio) >= (used + want) as f64;
    alive
        .into_iter()
        .filter(|l| {
            fits(l.host.vcpus, overcommit.cpu, l.used_vcpus, demand.vcpus)
                && fits(
                    l.host.memory_mib,
                    overcommit.memory,
                    l.used_memory_mib,
                    demand.memory_mib,
                )
                && fits(
                    l.host.disk_gib,
                    overcommit.disk,
                    l.used_disk_gib,
                    demand.disk_gib,
                )
        })
        .max_by_key(|l| {
            (l.host.memory_mib as f64 * overcommit.memory) as u64
                - l.used_memory_mib.min(l.host.memory_mib)
        })
        .map(|l| l.host.id)
        .ok_or(PlacementError::NoCapacity {
            vcpus: demand.vcpus,
            memory_mib: demand.memory_mib,
            disk_gib: demand.disk_gib,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubis_api::agent::{Accelerator, Host};

    fn load(name: &str, mem: u64, used_mem: u64, seen_secs_ago: i64) -> HostLoad {
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
            },
            used_vcpus: 0,
            used_memory_mib: used_mem,
            used_disk_gib: 0,
        }
    }

    const D: Demand = Demand {
        vcpus: 1,
        memory_mib: 512,
        disk_gib: 1,
    };
    const T: Duration = Duration::from_secs(60);

    #[test]
    fn picks_the_host_with_most_free_memory() {
        let loads = [load("a", 4096, 3000, 0), load("b", 4096, 1000, 0)];
        let got = place(&loads, D, Overcommit::default(), Utc::now(), T).unwrap();
        assert_eq!(got, loads[1].host.id);
    }

    #[test]
    fn skips_dead_and_full_hosts() {
        let loads = [load("dead", 65536, 0, 3600), load("full", 1024, 1000, 0)];
        let err = place(&loads, D, Overcommit::default(), Utc::now(), T).unwrap_err();
        assert!(matches!(err, PlacementError::NoCapacity { .. }));
        assert_eq!(
            place(&[], D, Overcommit::default(), Utc::now(), T).unwrap_err(),
            PlacementError::NoHosts
        );
    }

    #[test]
    fn cpu_overcommit_allows_more_vcpus_than_cores() {
        let mut l = load("a", 65536, 0, 0);
        l.used_vcpus = 7;
        assert!(place(&[l.clone()], D, Overcommit::default(), Utc::now(), T).is_ok());
        l.used_vcpus = 8;
        assert!(place(&[l], D, Overcommit::default(), Utc::now(), T).is_err());
    }
}
