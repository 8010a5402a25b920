//! The instances desired on this host, by address: what the metadata
//! service consults to know who is asking.

use crate::metadata::InstanceDirectory;
use nubis_api::agent::InstanceSpec;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::RwLock;

/// Address -> instance, replaced whenever desired state arrives. Addresses
/// are unique on a host because networks never overlap.
#[derive(Default)]
pub struct LocalInstances {
    by_ip: RwLock<HashMap<Ipv4Addr, InstanceSpec>>,
}

impl LocalInstances {
    /// Replaces the map with `instances`.
    pub fn update(&self, instances: &[InstanceSpec]) {
        let map = instances
            .iter()
            .flat_map(|i| i.nics.iter().map(move |n| (n.ip, i.clone())))
            .collect();
        *self.by_ip.write().expect("poisoned") = map;
    }

    /// Every desired instance with at least one NIC, once each.
    pub fn all(&self) -> Vec<InstanceSpec> {
        let map = self.by_ip.read().expect("poisoned");
        let mut seen = std::collections::HashSet::new();
        map.values()
            .filter(|s| seen.insert(s.id))
            .cloned()
            .collect()
    }
}

impl InstanceDirectory for LocalInstances {
    fn by_address(&self, ip: Ipv4Addr) -> Option<InstanceSpec> {
        self.by_ip.read().expect("poisoned").get(&ip).cloned()
    }
}
