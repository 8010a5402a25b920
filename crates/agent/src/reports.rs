//! What the agent last observed of each instance, shared between the
//! instance actors (writers) and the reporter (reader).

use nubis_api::agent::{HostReport, InstanceReport, MoveReport, MoveRole};
use nubis_api::ServerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Observations keyed by instance, with a wake-up for the reporter.
#[derive(Clone, Default)]
pub struct Reports {
    map: Arc<Mutex<HashMap<ServerId, InstanceReport>>>,
    /// Leftovers whose QEMU this agent stopped (fencing).
    fenced: Arc<Mutex<std::collections::BTreeSet<ServerId>>>,
    /// The ends of moves under way here, by instance and role.
    moves: Arc<Mutex<HashMap<(ServerId, MoveRole), MoveReport>>>,
    /// Instances held until released (see [`crate::moves::leftovers`]).
    leftovers: Arc<Mutex<std::collections::BTreeSet<ServerId>>>,
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

    /// Forgets an instance that no longer exists on this host (or is no
    /// longer this host's: a leftover reports no observations).
    pub fn remove(&self, id: ServerId) {
        if self.map.lock().expect("poisoned").remove(&id).is_some() {
            self.changed.notify_one();
        }
    }

    /// Notes that the agent stopped leftover `id`'s QEMU (fencing).
    pub fn set_fenced(&self, id: ServerId) {
        if self.fenced.lock().expect("poisoned").insert(id) {
            self.changed.notify_one();
        }
    }

    /// Records the state of one end of a move; wakes the reporter if it changed.
    pub fn set_move(&self, report: MoveReport) {
        let mut moves = self.moves.lock().expect("poisoned");
        let key = (report.id, report.role);
        if moves.get(&key) != Some(&report) {
            moves.insert(key, report);
            self.changed.notify_one();
        }
    }

    /// Forgets the moves of an instance that left this host (or was removed).
    pub fn remove_moves(&self, id: ServerId) {
        let mut moves = self.moves.lock().expect("poisoned");
        let before = moves.len();
        moves.retain(|(of, _), _| *of != id);
        if moves.len() != before {
            self.changed.notify_one();
        }
    }

    /// Replaces the leftovers (instances no longer this host's, not yet
    /// released).
    pub fn set_leftovers(&self, ids: impl IntoIterator<Item = ServerId>) {
        let ids: std::collections::BTreeSet<ServerId> = ids.into_iter().collect();
        let mut current = self.leftovers.lock().expect("poisoned");
        if *current != ids {
            *current = ids;
            self.changed.notify_one();
        }
    }

    /// Forgets everything about `id` (its files are gone) but a fencing
    /// not yet reported (see [`Self::reported`]).
    pub fn forget(&self, id: ServerId) {
        if self.leftovers.lock().expect("poisoned").remove(&id) {
            self.changed.notify_one();
        }
        self.remove(id);
        self.remove_moves(id);
    }

    /// After `report` reached the controller: fencings it carried of
    /// instances no longer held are done with (the controller recorded
    /// them; a release may come before the report that says so).
    pub fn reported(&self, report: &HostReport) {
        let leftovers = self.leftovers.lock().expect("poisoned");
        let mut fenced = self.fenced.lock().expect("poisoned");
        for id in &report.fenced {
            if !leftovers.contains(id) {
                fenced.remove(id);
            }
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
        let mut moves: Vec<MoveReport> = self
            .moves
            .lock()
            .expect("poisoned")
            .values()
            .cloned()
            .collect();
        moves.sort_by_key(|m| (m.id, m.role == MoveRole::Departure));
        HostReport {
            moves,
            instances,
            traffic: Vec::new(),
            addressing: None,
            fenced: self
                .fenced
                .lock()
                .expect("poisoned")
                .iter()
                .copied()
                .collect(),
            leftovers: self
                .leftovers
                .lock()
                .expect("poisoned")
                .iter()
                .copied()
                .collect(),
            held: Vec::new(),
        }
    }

    /// Waits until some observation changes.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}
