//! Many simulated hosts in one process: joined with bounded concurrency,
//! run until dropped, with counters of the protocol traffic they made.

use crate::host::{SimHost, SimHostSpec, SimSettings};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Protocol calls made by a fleet's hosts since it started.
#[derive(Debug, Default)]
pub struct FleetCounters {
    desired: AtomicU64,
    reports: AtomicU64,
    failures: AtomicU64,
}

impl FleetCounters {
    pub(crate) fn desired_fetched(&self) {
        self.desired.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn reported(&self) {
        self.reports.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    /// Desired states answered (long polls that returned).
    pub fn desired(&self) -> u64 {
        self.desired.load(Ordering::Relaxed)
    }
    /// Reports accepted.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }
    /// Calls that failed (refused, timed out, no answer).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Simulated hosts that joined one controller, and their running loops
/// (aborted when the fleet is dropped).
pub struct Fleet {
    pub hosts: Vec<SimHost>,
    pub counters: Arc<FleetCounters>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Joins one host per (token, spec), at most `concurrency` joins at a
    /// time; fails if any join fails.
    pub async fn join(
        controller_url: &str,
        joins: Vec<(String, SimHostSpec)>,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        let hosts: Vec<SimHost> = stream::iter(joins)
            .map(|(token, spec)| async move {
                SimHost::join(controller_url, &token, &spec)
                    .await
                    .map_err(|e| e.context(format!("simulated host {}", spec.name)))
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        Ok(Self {
            hosts,
            counters: Arc::default(),
            tasks: Vec::new(),
        })
    }

    /// Starts every host's loops.
    pub fn start(&mut self, settings: SimSettings) {
        for host in &self.hosts {
            self.tasks
                .extend(host.spawn(settings, self.counters.clone()));
        }
    }

    /// Starts following the desired state on every host (for a fleet
    /// started with `follow: false`, e.g. while a benchmark fills it).
    pub fn follow(&mut self) {
        for host in &self.hosts {
            self.tasks.push(host.spawn_follower(self.counters.clone()));
        }
    }

    /// Instances each host runs now, by host name.
    pub fn instance_counts(&self) -> Vec<(String, usize)> {
        self.hosts
            .iter()
            .map(|h| (h.name.clone(), h.instance_count()))
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
