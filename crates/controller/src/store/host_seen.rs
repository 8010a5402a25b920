//! Heartbeats, written in batches.
//!
//! Every report and every long poll of every agent marks its host seen.
//! One write each would, with thousands of hosts, keep the database's single
//! writer (SQLite) busy with heartbeats while creates wait. Instead a host
//! seen is noted in memory and written at most [`FLUSH_AFTER`] later,
//! together with every other host seen meanwhile, in one transaction. A
//! host therefore looks up to that much older than it is, which is nothing
//! against the heartbeat timeout (60 s by default, seconds in tests). A host
//! not seen for long (that may look down) is written at once, so the
//! report that brings it back up is seen as soon as it is answered.

use super::{Store, StoreError, StoreResult};
use nubis_api::HostId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a heartbeat may wait in memory before it is written.
pub const FLUSH_AFTER: Duration = Duration::from_millis(250);

/// The heartbeats not yet written, shared by the store's clones.
#[derive(Default)]
pub struct SeenHosts {
    /// Host → when it was last seen (Unix ms).
    pending: Mutex<HashMap<HostId, i64>>,
    /// Hosts known to exist (hosts are never removed), so a heartbeat
    /// reads nothing to tell an unknown host, with when this store last
    /// saw them (Unix ms).
    known: Mutex<HashMap<HostId, i64>>,
}

impl SeenHosts {
    /// Notes `host` seen at `at`; true when it is the first heartbeat
    /// waiting (the caller then schedules the write).
    fn note(&self, host: HostId, at: i64) -> bool {
        let mut pending = self.pending.lock().expect("seen hosts");
        let first = pending.is_empty();
        let last = pending.entry(host).or_insert(at);
        *last = (*last).max(at);
        first
    }

    fn take(&self) -> HashMap<HostId, i64> {
        std::mem::take(&mut *self.pending.lock().expect("seen hosts"))
    }

    /// When this store last saw `host` (None: never, or unknown host),
    /// now noted as `at`.
    fn last_seen(&self, host: HostId, at: i64) -> Option<i64> {
        let mut known = self.known.lock().expect("seen hosts");
        let last = known.get(&host).copied();
        if last.is_some() {
            known.insert(host, at);
        }
        last
    }

    fn learn(&self, host: HostId, at: i64) {
        self.known.lock().expect("seen hosts").insert(host, at);
    }
}

impl Store {
    /// Marks a host alive now: written within [`FLUSH_AFTER`] in a batch
    /// (see the module's doc), or at once when this store has not seen it
    /// for `write_now_after` (it may look down). [`StoreError::NotFound`]
    /// for an unknown host.
    pub async fn saw_host(&self, id: HostId, write_now_after: Duration) -> StoreResult<()> {
        let now = super::now_ms();
        let last = match self.seen.last_seen(id, now) {
            Some(last) => last,
            None => {
                // First seen by this store (e.g. after a restart, every
                // host at once): its stored time tells whether it looks
                // down, so the hosts that do not are batched too.
                let stored: Option<i64> =
                    sqlx::query_scalar("SELECT last_seen FROM hosts WHERE id = $1")
                        .bind(id.to_string())
                        .fetch_optional(self.pool())
                        .await?;
                let Some(stored) = stored else {
                    return Err(StoreError::NotFound);
                };
                self.seen.learn(id, now);
                stored
            }
        };
        if now.saturating_sub(last) > i64::try_from(write_now_after.as_millis()).unwrap_or(i64::MAX)
        {
            return self.touch_host(id).await;
        }
        if self.seen.note(id, now) {
            let store = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(FLUSH_AFTER).await;
                if let Err(e) = store.flush_seen_hosts().await {
                    // The next heartbeats note these hosts again.
                    tracing::warn!(error = %e, "writing hosts' heartbeats");
                }
            });
        }
        Ok(())
    }

    /// Writes the heartbeats noted so far, in one transaction. A time never
    /// goes backwards (another controller may have written a later one).
    pub async fn flush_seen_hosts(&self) -> StoreResult<()> {
        let batch = self.seen.take();
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (host, at) in batch {
            sqlx::query("UPDATE hosts SET last_seen = $2 WHERE id = $1 AND last_seen < $2")
                .bind(host.to_string())
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_heartbeat_waiting_schedules_the_write_and_the_latest_time_wins() {
        let seen = SeenHosts::default();
        let (a, b) = (HostId::new(), HostId::new());
        assert!(seen.note(a, 10));
        assert!(!seen.note(b, 11));
        assert!(!seen.note(a, 5));
        let batch = seen.take();
        assert_eq!(batch[&a], 10);
        assert_eq!(batch[&b], 11);
        assert!(
            seen.note(a, 12),
            "after a write, the next heartbeat schedules one"
        );
    }
}
