//! What the agent last observed of each instance, shared between the
//! instance actors (writers) and the reporter (reader).

use nubis_api::agent::{HostReport, InstanceReport};
use nubis_api::ServerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Observations keyed by instance, with a wake-up for the reporter.
#[derive(Clone, Default)]
pub struct Reports {
    map: Arc<Mutex<HashMap<ServerId, InstanceReport>>>,
    changed: Arc<Notify>,
}

impl Reports {
    /// Records an observation; wakes the reporter if it differs from the last.
    pub fn set(&self, report: InstanceReport) {
        let mut map = self.map.lock().expect("poisoned");
        if map.get(&report.id) != Some(&report) {
            map.insert(report.id, report);
            self.changed.notify_one();
        }
    }

    /// Forgets an instance that no longer exists on this host.
    pub fn remove(&self, id: ServerId) {
        if self.map.lock().expect("poisoned").remove(&id).is_some() {
            self.changed.notify_one();
        }
    }

    /// The full report of this host.
    pub fn snapshot(&self) -> HostReport {
        let mut instances: Vec<InstanceReport> = self
            .map
            .lock()
            .expect("poisoned")
            .values()
            .cloned()
            .collect();
        instances.sort_by_key(|i| i.id);
        HostReport {
            instances,
            traffic: Vec::new(),
            held: Vec::new(),
            addressing: None,
            ..HostReport::default()
        }
    }

    /// Waits until some observation changes.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}
