//! Faults of whole networks on this host (DHCP and DNS not served), shown
//! on the servers that use them: a guest on such a network runs but gets no
//! address, keys or name, so reporting it `running` would hide the failure.

use nubis_api::agent::{HostReport, InstanceSpec, ObservedPower};
use nubis_api::NetworkId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The current fault of each failing network, with a wake-up on change.
#[derive(Clone, Default)]
pub struct NetworkFaults {
    current: Arc<Mutex<HashMap<NetworkId, String>>>,
    changed: Arc<Notify>,
}

impl NetworkFaults {
    /// Replaces the faults with `faults` (empty: every network is fine).
    pub fn replace(&self, faults: HashMap<NetworkId, String>) {
        let mut current = self.current.lock().expect("poisoned");
        if *current != faults {
            for (id, fault) in &faults {
                if current.get(id) != Some(fault) {
                    tracing::error!(network = %id, %fault, "network fault");
                }
            }
            *current = faults;
            self.changed.notify_one();
        }
    }

    /// Waits until the faults change.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Reports every instance of `instances` that has a NIC on a failing
    /// network as an error with the network's fault, unless it already
    /// reports a fault of its own or is not meant to have a guest running.
    pub fn mark(&self, report: &mut HostReport, instances: &[InstanceSpec]) {
        let current = self.current.lock().expect("poisoned");
        if current.is_empty() {
            return;
        }
        for observed in &mut report.instances {
            if !matches!(
                observed.power,
                ObservedPower::Running | ObservedPower::Creating
            ) {
                continue;
            }
            let fault = instances
                .iter()
                .filter(|spec| spec.id == observed.id)
                .flat_map(|spec| &spec.nics)
                .find_map(|nic| current.get(&nic.network.id));
            if let Some(fault) = fault {
                observed.power = ObservedPower::Error;
                observed.fault = Some(fault.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubis_api::agent::InstanceReport;
    use nubis_api::ServerId;

    fn spec_on(id: ServerId, network: NetworkId) -> InstanceSpec {
        let mut spec = crate::fixtures::instance_spec("s");
        spec.id = id;
        spec.nics = vec![nubis_api::agent::NicSpec {
            port: nubis_api::PortId::new(),
            mac: "52:54:00:00:00:01".into(),
            ip: "10.64.0.2".parse().unwrap(),
            network: nubis_api::agent::NetworkSpec {
                id: network,
                cidr: "10.64.0.0/24".parse().unwrap(),
                gateway: "10.64.0.1".parse().unwrap(),
                domain: "alice.nubis.internal".into(),
            },
        }];
        spec
    }

    fn observed(id: ServerId, power: ObservedPower) -> InstanceReport {
        InstanceReport {
            id,
            power,
            fault: None,
            reboot_generation: 0,
            launched_at: None,
            guest_shutdown: false,
        }
    }

    #[test]
    fn servers_on_a_failing_network_report_its_fault_until_it_heals() {
        let (bad, good) = (NetworkId::new(), NetworkId::new());
        let (a, b, stopped) = (ServerId::new(), ServerId::new(), ServerId::new());
        let specs = [spec_on(a, bad), spec_on(b, good), spec_on(stopped, bad)];
        let report = || HostReport {
            instances: vec![
                observed(a, ObservedPower::Running),
                observed(b, ObservedPower::Running),
                observed(stopped, ObservedPower::Stopped),
            ],
            traffic: Vec::new(),
            held: Vec::new(),
            addressing: None,
            ..HostReport::default()
        };
        let faults = NetworkFaults::default();
        faults.replace(HashMap::from([(bad, "dnsmasq cannot read".to_owned())]));

        let mut marked = report();
        faults.mark(&mut marked, &specs);
        assert_eq!(marked.instances[0].power, ObservedPower::Error);
        assert_eq!(
            marked.instances[0].fault.as_deref(),
            Some("dnsmasq cannot read")
        );
        // Positive control: the server on the other network stays running,
        // and a stopped one needs no DHCP.
        assert_eq!(marked.instances[1], observed(b, ObservedPower::Running));
        assert_eq!(
            marked.instances[2],
            observed(stopped, ObservedPower::Stopped)
        );

        faults.replace(HashMap::new());
        let mut healed = report();
        faults.mark(&mut healed, &specs);
        assert_eq!(healed.instances, report().instances);
    }

    #[tokio::test]
    async fn a_change_wakes_the_reporter() {
        let faults = NetworkFaults::default();
        faults.replace(HashMap::from([(NetworkId::new(), "down".to_owned())]));
        // notify_one keeps the wake-up for a waiter that comes later.
        tokio::time::timeout(std::time::Duration::from_secs(5), faults.changed())
            .await
            .expect("woken");
    }
}
