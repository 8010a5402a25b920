//! Filters: each one says whether a host can take a server at all.

use super::{Demand, GroupContext, Overcommit, PlacementError, PlacementRequest};
use crate::store::hosts::HostLoad;
use nubis_api::server_groups::GroupPolicy;

/// Whether `used + want` fits in `have * ratio`.
fn fits_one(have: u64, ratio: f64, used: u64, want: u64) -> bool {
    (have as f64 * ratio) >= used.saturating_add(want) as f64
}

/// Room under the overcommit ratios (Nova's Core/Ram/DiskFilter).
pub fn has_room(load: &HostLoad, demand: Demand, overcommit: &Overcommit) -> bool {
    let h = &load.host;
    fits_one(h.vcpus, overcommit.cpu, load.used_vcpus, demand.vcpus)
        && fits_one(
            h.memory_mib,
            overcommit.memory,
            load.used_memory_mib,
            demand.memory_mib,
        )
        && fits_one(
            h.disk_gib,
            overcommit.disk,
            load.used_disk_gib,
            demand.disk_gib,
        )
}

/// What is left of one resource under its ratio.
fn left_one(have: u64, ratio: f64, used: u64) -> u64 {
    ((have as f64 * ratio).floor() as u64).saturating_sub(used)
}

/// Whether one host, its load read under its claim's lock, can take
/// `demand`: enabled, with room under the overcommit ratios. The rule every
/// claim applies once it holds the host (a create's, after the scheduler
/// ranked the candidates; a move's, on the target chosen for it), with why
/// not.
pub fn claimable(
    load: &HostLoad,
    demand: Demand,
    overcommit: &Overcommit,
) -> Result<(), PlacementError> {
    let why = if !load.host.enabled {
        "it is disabled (it takes no new servers)".to_owned()
    } else if !has_room(load, demand, overcommit) {
        let h = &load.host;
        format!(
            "room is left for {} vCPUs, {} MiB memory and {} GiB disk",
            left_one(h.vcpus, overcommit.cpu, load.used_vcpus),
            left_one(h.memory_mib, overcommit.memory, load.used_memory_mib),
            left_one(h.disk_gib, overcommit.disk, load.used_disk_gib),
        )
    } else {
        return Ok(());
    };
    Err(PlacementError::HostRefused {
        host: load.host.name.clone(),
        vcpus: demand.vcpus,
        memory_mib: demand.memory_mib,
        disk_gib: demand.disk_gib,
        why,
    })
}

/// Affinity: on a member's host (any host for the first member);
/// anti-affinity: on no member's host.
pub fn group_allows(load: &HostLoad, group: &GroupContext) -> bool {
    let on_member_host = group.member_hosts.contains(&load.host.id);
    match group.policy {
        GroupPolicy::Affinity => group.member_hosts.is_empty() || on_member_host,
        GroupPolicy::AntiAffinity => !on_member_host,
    }
}

/// Hosts that passed, and how many each filter turned away (for the fault).
#[derive(Debug, Default)]
pub struct Outcome<'a> {
    pub passed: Vec<&'a HostLoad>,
    pub disabled: usize,
    pub wrong_accel: usize,
    pub group: usize,
    pub full: usize,
}

impl Outcome<'_> {
    /// What beyond room ruled hosts out, as ", and ..." (empty if nothing).
    pub fn explain(&self) -> String {
        let mut parts = Vec::new();
        if self.disabled > 0 {
            parts.push(format!("{} host(s) disabled", self.disabled));
        }
        if self.wrong_accel > 0 {
            parts.push(format!(
                "{} host(s) without the accelerator asked for",
                self.wrong_accel
            ));
        }
        if self.group > 0 {
            parts.push(format!(
                "{} host(s) excluded by the server group's policy",
                self.group
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({} up host(s) full; {})", self.full, parts.join(", "))
        }
    }
}

/// Runs every filter over the up hosts.
pub fn apply<'a>(
    up: &[&'a HostLoad],
    request: &PlacementRequest,
    overcommit: &Overcommit,
) -> Outcome<'a> {
    let mut out = Outcome::default();
    for &load in up {
        if !load.host.enabled {
            out.disabled += 1;
        } else if request.accel.is_some_and(|a| a != load.host.accel) {
            out.wrong_accel += 1;
        } else if request
            .group
            .as_ref()
            .is_some_and(|g| !group_allows(load, g))
        {
            out.group += 1;
        } else if !has_room(load, request.demand, overcommit) {
            out.full += 1;
        } else {
            out.passed.push(load);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, D};
    use super::super::*;
    use nubis_api::agent::Accelerator;
    use std::collections::HashSet;

    fn run(loads: &[HostLoad], request: &PlacementRequest) -> Result<Vec<HostId>, PlacementError> {
        candidates(loads, request, &PlacementSettings::default(), Utc::now())
    }

    #[test]
    fn skips_down_and_full_hosts() {
        let loads = [load("dead", 65536, 0, 3600), load("full", 1024, 1000, 0)];
        let err = run(&loads, &PlacementRequest::new(D)).unwrap_err();
        assert!(matches!(err, PlacementError::NoCapacity { .. }), "{err}");
        assert_eq!(
            run(&[], &PlacementRequest::new(D)).unwrap_err(),
            PlacementError::NoHosts
        );
        // Positive control: the live host with room is chosen.
        let ok = [load("dead", 65536, 0, 3600), load("ok", 4096, 0, 0)];
        assert_eq!(
            run(&ok, &PlacementRequest::new(D)).unwrap(),
            [ok[1].host.id]
        );
    }

    #[test]
    fn down_means_silent_longer_than_the_timeout() {
        let now = Utc::now();
        let settings = PlacementSettings::default();
        let ago = |s| now - chrono::Duration::seconds(s);
        assert!(settings.is_up(ago(59), now));
        assert!(!settings.is_up(ago(61), now));
        assert!(settings.is_up(ago(-5), now), "clock skew: up");
    }

    #[test]
    fn host_down_after_is_the_operators() {
        let loads = [load("a", 4096, 0, 90)];
        let settings = PlacementSettings {
            host_down_after: Duration::from_secs(120),
            ..Default::default()
        };
        assert!(candidates(&loads, &PlacementRequest::new(D), &settings, Utc::now()).is_ok());
        assert_eq!(
            run(&loads, &PlacementRequest::new(D)).unwrap_err(),
            PlacementError::NoHosts
        );
    }

    #[test]
    fn cpu_overcommit_allows_more_vcpus_than_cores() {
        let mut l = load("a", 65536, 0, 0);
        l.used_vcpus = 7;
        assert!(run(&[l.clone()], &PlacementRequest::new(D)).is_ok());
        l.used_vcpus = 8;
        assert!(run(&[l.clone()], &PlacementRequest::new(D)).is_err());
        // A ratio of 8 makes room again.
        let settings = PlacementSettings {
            overcommit: Overcommit {
                cpu: 8.0,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(candidates(&[l], &PlacementRequest::new(D), &settings, Utc::now()).is_ok());
    }

    #[test]
    fn ram_and_disk_ratios_apply() {
        let mut l = load("a", 1024, 1024, 0);
        assert!(run(&[l.clone()], &PlacementRequest::new(D)).is_err());
        let settings = PlacementSettings {
            overcommit: Overcommit {
                memory: 1.5,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(candidates(
            &[l.clone()],
            &PlacementRequest::new(D),
            &settings,
            Utc::now()
        )
        .is_ok());
        l.used_memory_mib = 0;
        l.used_disk_gib = 100;
        assert!(run(&[l.clone()], &PlacementRequest::new(D)).is_err());
        l.used_disk_gib = 99;
        assert!(run(&[l], &PlacementRequest::new(D)).is_ok());
    }

    #[test]
    fn a_claim_on_one_host_says_why_it_is_refused() {
        let o = Overcommit::default();
        let mut l = load("h2", 1024, 768, 0);
        let err = filters::claimable(&l, D, &o).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("host h2 cannot take 1 vCPUs, 512 MiB"),
            "{text}"
        );
        assert!(
            text.contains("room is left for 8 vCPUs, 256 MiB memory"),
            "{text}"
        );
        l.used_memory_mib = 512;
        assert_eq!(
            filters::claimable(&l, D, &o),
            Ok(()),
            "the positive control"
        );
        l.host.enabled = false;
        let err = filters::claimable(&l, D, &o).unwrap_err();
        assert!(err.to_string().contains("disabled"), "{err}");
    }

    #[test]
    fn disabled_hosts_get_nothing_and_the_fault_says_so() {
        let mut off = load("off", 65536, 0, 0);
        off.host.enabled = false;
        let err = run(&[off.clone()], &PlacementRequest::new(D)).unwrap_err();
        assert!(err.to_string().contains("1 host(s) disabled"), "{err}");
        off.host.enabled = true;
        assert!(run(&[off], &PlacementRequest::new(D)).is_ok());
    }

    #[test]
    fn accelerator_filter() {
        let tcg = load("tcg", 65536, 0, 0);
        let mut kvm = load("kvm", 1024, 0, 0);
        kvm.host.accel = Accelerator::Kvm;
        let loads = [tcg.clone(), kvm.clone()];
        let want_kvm = PlacementRequest {
            accel: Some(Accelerator::Kvm),
            ..PlacementRequest::new(D)
        };
        assert_eq!(run(&loads, &want_kvm).unwrap(), [kvm.host.id]);
        let err = run(std::slice::from_ref(&tcg), &want_kvm).unwrap_err();
        assert!(err.to_string().contains("without the accelerator"), "{err}");
        // No preference: both, most free memory first.
        assert_eq!(
            run(&loads, &PlacementRequest::new(D)).unwrap(),
            [tcg.host.id, kvm.host.id]
        );
    }

    #[test]
    fn server_groups_affinity_and_anti_affinity() {
        let a = load("a", 8192, 0, 0);
        let b = load("b", 4096, 0, 0);
        let loads = [a.clone(), b.clone()];
        let group = |policy, on: &[&HostLoad]| PlacementRequest {
            group: Some(GroupContext {
                policy,
                member_hosts: on.iter().map(|l| l.host.id).collect::<HashSet<_>>(),
            }),
            ..PlacementRequest::new(D)
        };
        // An empty group constrains nothing.
        assert_eq!(
            run(&loads, &group(GroupPolicy::Affinity, &[])).unwrap(),
            [a.host.id, b.host.id]
        );
        // Affinity follows the members even to the host with less room.
        assert_eq!(
            run(&loads, &group(GroupPolicy::Affinity, &[&b])).unwrap(),
            [b.host.id]
        );
        assert_eq!(
            run(&loads, &group(GroupPolicy::AntiAffinity, &[&a])).unwrap(),
            [b.host.id]
        );
        let err = run(&loads, &group(GroupPolicy::AntiAffinity, &[&a, &b])).unwrap_err();
        assert!(err.to_string().contains("server group's policy"), "{err}");
    }
}
