//! One simulated host: joins like an agent (join token, own key, host
//! certificate), then follows its desired state and reports over the real
//! agent protocol, with [`SimInstances`] as its hypervisor.

use crate::fleet::FleetCounters;
use crate::instances::SimInstances;
use anyhow::Context;
use nubis_agent::controller_client::{join_request, ControllerClient};
use nubis_api::agent::{Accelerator, RegisterHost};
use nubis_api::HostId;
use nubis_pki::{HostCredentials, JoinToken};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What a simulated host announces.
#[derive(Clone, Debug)]
pub struct SimHostSpec {
    /// Unique in the cloud, e.g. `sim-00042`.
    pub name: String,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

impl SimHostSpec {
    /// The registration a real agent would send (no addressing: a simulated
    /// host has no interfaces of its own to report).
    fn registration(&self) -> RegisterHost {
        RegisterHost {
            name: self.name.clone(),
            url: format!("https://{}.sim.invalid:1", self.name),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
            accel: Accelerator::Kvm,
            addressing: None,
            cpu_model: Some("simulated".into()),
            // No underlay, no shared store: servers of a network stay on
            // their host, moves copy (nothing: simulated disks are empty).
            tunnel_ip: None,
            shared_store: None,
        }
    }
}

/// How simulated hosts behave once joined.
#[derive(Clone, Copy, Debug)]
pub struct SimSettings {
    /// Between two reports when nothing changed (a real agent's
    /// `--meter-interval`: its heartbeat).
    pub heartbeat: Duration,
    /// Long-poll the desired state (as agents do). Off, a host only
    /// heartbeats: its servers stay `building`, but a benchmark of placement
    /// alone is not drowned by every host fetching its desired state again
    /// on each change while revisions are global (one per cloud).
    pub follow: bool,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            follow: true,
        }
    }
}

/// A simulated host that has joined the cluster.
pub struct SimHost {
    pub id: HostId,
    pub name: String,
    client: ControllerClient,
    instances: Arc<Mutex<SimInstances>>,
    /// Wakes the reporter when the instances changed.
    changed: Arc<Notify>,
}

impl SimHost {
    /// Joins the cluster at `controller_url` (the agent protocol's mutual-TLS
    /// listener) with a single-use `join_token`, exactly as `nubis agent
    /// --join-token` does, then registers as an agent does at every start.
    pub async fn join(
        controller_url: &str,
        join_token: &str,
        spec: &SimHostSpec,
    ) -> anyhow::Result<Self> {
        let token = JoinToken::parse(join_token).map_err(|e| anyhow::anyhow!("join token: {e}"))?;
        let registration = spec.registration();
        let (key_pem, request) = join_request(&token, registration.clone())?;
        let joined = ControllerClient::for_join(controller_url, &token)?
            .join(&request)
            .await?
            .map_err(|refused| anyhow::anyhow!("join refused: {refused}"))?;
        let credentials =
            HostCredentials::from_join(&token, key_pem, joined.cert_pem, joined.ca_pem)?;
        let client = ControllerClient::new(controller_url, &credentials)?;
        let host = client.register(&registration).await?;
        anyhow::ensure!(host.id == joined.host.id, "registered under another id");
        Ok(Self {
            id: host.id,
            name: host.name,
            client,
            instances: Arc::default(),
            changed: Arc::default(),
        })
    }

    /// How many instances the host runs now.
    pub fn instance_count(&self) -> usize {
        self.instances.lock().expect("poisoned").len()
    }

    /// Starts the host's loops (report, and follow the desired state if
    /// `settings.follow`); they run until the handles are aborted.
    pub fn spawn(
        &self,
        settings: SimSettings,
        counters: Arc<FleetCounters>,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(report_loop(
            self.client.clone(),
            self.id,
            self.instances.clone(),
            self.changed.clone(),
            settings.heartbeat,
            counters.clone(),
        ))];
        if settings.follow {
            tasks.push(self.spawn_follower(counters));
        }
        tasks
    }

    /// Starts following the desired state (for a host started without).
    pub fn spawn_follower(&self, counters: Arc<FleetCounters>) -> JoinHandle<()> {
        tokio::spawn(follow_loop(
            self.client.clone(),
            self.id,
            self.instances.clone(),
            self.changed.clone(),
            counters,
        ))
    }
}

/// Long-polls the desired state and converges the fake instances to it.
async fn follow_loop(
    client: ControllerClient,
    host: HostId,
    instances: Arc<Mutex<SimInstances>>,
    changed: Arc<Notify>,
    counters: Arc<FleetCounters>,
) {
    let mut after = None;
    loop {
        match client.desired(host, after).await {
            Ok(desired) => {
                counters.desired_fetched();
                after = Some(desired.revision);
                let moved = instances
                    .lock()
                    .expect("poisoned")
                    .converge(&desired.instances, chrono::Utc::now());
                if moved {
                    changed.notify_one();
                }
            }
            Err(e) => {
                counters.failed();
                tracing::debug!(%host, error = %format!("{e:#}"), "simulated host: desired state");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Where in the heartbeat period a host first reports: spread by its id,
/// as agents started at different times are, rather than all hosts of a
/// fleet at the same instant.
fn first_report_after(host: HostId, heartbeat: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    host.hash(&mut h);
    heartbeat.mul_f64((h.finish() % 10_000) as f64 / 10_000.0)
}

/// Reports at once after a change, else every `heartbeat`.
async fn report_loop(
    client: ControllerClient,
    host: HostId,
    instances: Arc<Mutex<SimInstances>>,
    changed: Arc<Notify>,
    heartbeat: Duration,
    counters: Arc<FleetCounters>,
) {
    let _ = tokio::time::timeout(first_report_after(host, heartbeat), changed.notified()).await;
    loop {
        let report = instances.lock().expect("poisoned").report();
        match client
            .report(host, &report)
            .await
            .context("simulated host: report")
        {
            Ok(()) => counters.reported(),
            Err(e) => {
                counters.failed();
                tracing::debug!(%host, error = %format!("{e:#}"), "simulated host: report");
            }
        }
        let _ = tokio::time::timeout(heartbeat, changed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reports_are_spread_over_the_heartbeat() {
        let beat = Duration::from_secs(10);
        let offsets: Vec<Duration> = (0..200)
            .map(|_| first_report_after(HostId::new(), beat))
            .collect();
        assert!(offsets.iter().all(|d| *d < beat));
        let early = offsets.iter().filter(|d| **d < beat / 2).count();
        assert!(
            (50..150).contains(&early),
            "{early} of 200 in the first half"
        );
    }
}
