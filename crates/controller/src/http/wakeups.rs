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
        let table = self.hosts.lock().expect("wake-up table");
        for host in hosts {
            if let Some(tx) = table.get(&host) {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
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
}
