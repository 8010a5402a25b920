//! The agent's part in moving servers between hosts (see
//! `nubis_api::agent::Arrival` and `Departure`): the target pulls a cold
//! server's disk from the source agent ([`arrival`]), the source serves it
//! to that target only ([`departure`]), and instances that are no longer
//! this host's are fenced and kept until the controller releases them
//! ([`leftovers`]). The shared instance store's id is in [`shared_store`].

pub mod arrival;
pub mod departure;
pub mod leftovers;
pub mod shared_store;

use nubis_api::agent::Departure;
use nubis_api::{HostId, ServerId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The departures of this host's desired state, read by the agent API's
/// disk export to know who may fetch what.
#[derive(Clone, Default)]
pub struct Departures(Arc<RwLock<HashMap<ServerId, Departure>>>);

impl Departures {
    /// Replaces them with those of the latest desired state.
    pub fn update(&self, departures: &[Departure]) {
        *self.0.write().expect("poisoned") = departures.iter().map(|d| (d.id, d.clone())).collect();
    }

    /// The departure of instance `id`, if it is leaving.
    pub fn get(&self, id: ServerId) -> Option<Departure> {
        self.0.read().expect("poisoned").get(&id).cloned()
    }
}

/// What instance actors need to move instances in.
#[derive(Clone, Default)]
pub struct MoveContext {
    /// This host's credentials, for calls to other agents (none in unit
    /// tests: arrivals by copy then fail with a clear error).
    pub credentials: Option<Arc<nubis_pki::HostCredentials>>,
    /// The departures of the latest desired state (shared with the agent
    /// API's disk export).
    pub departures: Departures,
}

impl MoveContext {
    /// An HTTP client that shows this host's certificate and accepts only
    /// host `peer`'s.
    pub fn peer_client(&self, peer: HostId) -> anyhow::Result<reqwest::Client> {
        let credentials = self
            .credentials
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this agent has no host credentials for peer calls"))?;
        credentials.peer_client(
            &peer.to_string(),
            reqwest::Client::builder()
                .connect_timeout(crate::controller_client::CONNECT_TIMEOUT)
                .read_timeout(std::time::Duration::from_secs(60)),
        )
    }
}
