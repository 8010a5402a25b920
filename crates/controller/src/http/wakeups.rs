//! Per-host wake-ups of agents' desired-state long polls.
//!
//! A long poll waits on two signals: the one of its own host (raised by a
//! change known to concern only some hosts: a server started, stopped or
//! rebooted, what an agent's report changed) and the one of every host
//! (raised by any other change: networks, security groups, floating IPs,
//! a new server, changes announced by other controllers). Either way the
//! woken poll recomputes its host's desired state and answers only when
//! that really changed (see `agents::desired`), so a change wakes only the
//! agents it concerns; a targeted signal also spares the other polls the
//! recomputation.

use nubis_api::HostId;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// The wake-up signals of one controller's long polls.
pub struct HostWakeups {
    everyone: watch::Sender<u64>,
    hosts: Mutex<HashMap<HostId, watch::Sender<u64>>>,
}

impl Default for HostWakeups {
    fn default() -> Self {
        Self {
            everyone: watch::channel(0).0,
            hosts: Mutex::default(),
        }
    }
}

/// What one long poll waits on; both marked seen when made.
pub struct Wakeup {
    everyone: watch::Receiver<u64>,
    own: watch::Receiver<u64>,
}

impl Wakeup {
    /// Resolves at the next signal for this host or for every host.
    pub async fn changed(&mut self) {
        tokio::select! {
            r = self.everyone.changed() => { if r.is_err() { std::future::pending::<()>().await } }
            r = self.own.changed() => { if r.is_err() { std::future::pending::<()>().await } }
        }
    }
}

impl HostWakeups {
    /// Subscribes a long poll of `host`: changes after this call wake it.
    pub fn subscribe(&self, host: HostId) -> Wakeup {
        let own = self
            .hosts
            .lock()
            .expect("wake-up table")
            .entry(host)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Wakeup {
            everyone: self.everyone.subscribe(),
            own,
        }
    }

    /// Wakes the long polls of every host.
    pub fn wake_all(&self) {
        self.everyone.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes the long polls of `hosts` only.
    pub fn wake(&self, hosts: impl IntoIterator<Item = HostId>) {
        let mut table = self.hosts.lock().expect("wake-up table");
        for host in hosts {
            // Counted even with no poll waiting: [`Self::marks`] tells a
            // host's reports apart by it.
            table
                .entry(host)
                .or_insert_with(|| watch::channel(0).0)
                .send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// How many changes concerning `host` (its own, and everyone's) this
    /// controller has seen: equal marks mean no change in between.
    pub fn marks(&self, host: HostId) -> (u64, u64) {
        let own = self
            .hosts
            .lock()
            .expect("wake-up table")
            .get(&host)
            .map_or(0, |tx| *tx.borrow());
        (*self.everyone.borrow(), own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(w: &mut Wakeup) -> bool {
        tokio::time::timeout(Duration::from_millis(50), w.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_targeted_change_wakes_only_its_hosts_and_a_general_one_wakes_all() {
        let wakeups = HostWakeups::default();
        let (a, b) = (HostId::new(), HostId::new());
        let (mut wa, mut wb) = (wakeups.subscribe(a), wakeups.subscribe(b));
        assert!(!woken(&mut wa).await, "nothing happened yet");
        wakeups.wake([a]);
        assert!(woken(&mut wa).await, "a's change wakes a");
        assert!(!woken(&mut wb).await, "a's change does not wake b");
        wakeups.wake_all();
        assert!(woken(&mut wa).await);
        assert!(woken(&mut wb).await);
        // A host nobody polls for is no error.
        wakeups.wake([HostId::new()]);
    }

    #[test]
    fn marks_move_with_every_change_that_concerns_the_host() {
        let wakeups = HostWakeups::default();
        let (a, b) = (HostId::new(), HostId::new());
        let start = wakeups.marks(a);
        wakeups.wake([b]);
        assert_eq!(wakeups.marks(a), start, "b's change is not a's");
        wakeups.wake([a]);
        let woken = wakeups.marks(a);
        assert_ne!(woken, start, "counted with no poll waiting");
        wakeups.wake_all();
        assert_ne!(wakeups.marks(a), woken);
    }
}
