//! The simulated hypervisor: what a host "runs" is a map of reports. An
//! instance asked to run is running at once (launched now); one asked to
//! stop is stopped; a reboot is carried out at once; one no longer desired
//! is gone. Level-triggered like the real actors: the same desired state
//! applied twice changes nothing.

use chrono::{DateTime, Utc};
use nubis_api::agent::{HostReport, InstanceReport, InstanceSpec, ObservedPower, PowerState};
use nubis_api::ServerId;
use std::collections::HashMap;

/// The instances of one simulated host, as its reports describe them.
#[derive(Debug, Default)]
pub struct SimInstances {
    observed: HashMap<ServerId, InstanceReport>,
}

impl SimInstances {
    /// Converges to `desired` at time `now`; true when any observation changed
    /// (the host then reports at once rather than at its next heartbeat).
    pub fn converge(&mut self, desired: &[InstanceSpec], now: DateTime<Utc>) -> bool {
        let before = self.observed.len();
        self.observed
            .retain(|id, _| desired.iter().any(|spec| spec.id == *id));
        let mut changed = self.observed.len() != before;
        for spec in desired {
            let previous = self.observed.get(&spec.id);
            let power = match spec.power {
                PowerState::Running => ObservedPower::Running,
                PowerState::Stopped => ObservedPower::Stopped,
            };
            // A start (or the first boot) launches now; running on keeps
            // its launch time.
            let launched_at = match (previous, power) {
                (Some(p), ObservedPower::Running) if p.power == ObservedPower::Running => {
                    p.launched_at
                }
                (_, ObservedPower::Running) => Some(now),
                (Some(p), _) => p.launched_at,
                (None, _) => None,
            };
            let next = InstanceReport {
                id: spec.id,
                power,
                fault: None,
                reboot_generation: spec.reboot_generation,
                launched_at,
                guest_shutdown: false,
            };
            if previous != Some(&next) {
                self.observed.insert(spec.id, next);
                changed = true;
            }
        }
        changed
    }

    /// The full report of the host (no traffic: simulated guests send none).
    pub fn report(&self) -> HostReport {
        let mut instances: Vec<InstanceReport> = self.observed.values().cloned().collect();
        instances.sort_by_key(|i| i.id);
        HostReport {
            held: instances.iter().map(|i| i.id).collect(),
            instances,
            traffic: Vec::new(),
            addressing: None,
            // A simulated host forgets what is not wanted at once: it never
            // holds leftovers, so it has nothing to fence or release.
            leftovers: Vec::new(),
            fenced: Vec::new(),
            moves: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.observed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.observed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(power: PowerState) -> InstanceSpec {
        InstanceSpec {
            power,
            ..nubis_agent::fixtures::instance_spec("sim")
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_desired_instance_runs_at_once_and_keeps_its_launch_time() {
        let mut sim = SimInstances::default();
        let a = spec(PowerState::Running);
        assert!(sim.converge(std::slice::from_ref(&a), at(0)));
        let r = sim.report();
        assert_eq!(r.instances.len(), 1);
        assert_eq!(r.instances[0].power, ObservedPower::Running);
        assert_eq!(r.instances[0].launched_at, Some(at(0)));
        assert_eq!(r.held, vec![a.id]);
        // The same desired state again: nothing changes, not even the time.
        assert!(!sim.converge(std::slice::from_ref(&a), at(5)));
        assert_eq!(sim.report().instances[0].launched_at, Some(at(0)));
    }

    #[test]
    fn stop_start_reboot_and_removal_are_carried_out() {
        let mut sim = SimInstances::default();
        let mut a = spec(PowerState::Running);
        let b = spec(PowerState::Stopped);
        assert!(sim.converge(&[a.clone(), b.clone()], at(0)));
        let report = sim.report();
        let power_of = |r: &HostReport, id| r.instances.iter().find(|i| i.id == id).unwrap().power;
        assert_eq!(power_of(&report, b.id), ObservedPower::Stopped);
        assert_eq!(
            report
                .instances
                .iter()
                .find(|i| i.id == b.id)
                .unwrap()
                .launched_at,
            None
        );
        a.power = PowerState::Stopped;
        assert!(sim.converge(&[a.clone(), b.clone()], at(1)));
        assert_eq!(power_of(&sim.report(), a.id), ObservedPower::Stopped);
        a.power = PowerState::Running;
        a.reboot_generation = 3;
        assert!(sim.converge(&[a.clone(), b.clone()], at(2)));
        let report = sim.report();
        let ra = report.instances.iter().find(|i| i.id == a.id).unwrap();
        assert_eq!(ra.power, ObservedPower::Running);
        assert_eq!(ra.launched_at, Some(at(2)), "a start launches anew");
        assert_eq!(ra.reboot_generation, 3);
        // No longer desired: gone from the report, held no more.
        assert!(sim.converge(std::slice::from_ref(&b), at(3)));
        assert_eq!(sim.len(), 1);
        assert_eq!(sim.report().held, vec![b.id]);
        assert!(sim.converge(&[], at(4)));
        assert!(sim.is_empty());
    }
}
