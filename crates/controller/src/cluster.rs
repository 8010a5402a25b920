//! The controller's side of the cluster's credentials: the cluster CA (in
//! the data dir), this controller's own certificate (made at start), join
//! tokens and joins, and the mutual-TLS clients for calls to agents.

use crate::store::{Store, StoreError};
use anyhow::Context;
use chrono::{DateTime, Utc};
use nubis_api::agent::RegisterHost;
use nubis_api::join::{JoinRequest, JoinResponse};
use nubis_api::HostId;
use nubis_pki::ca::IssuedPair;
use nubis_pki::identity::{url_host, PeerIdentity, Role};
use nubis_pki::tls::{cluster_client_config, cluster_server_config, ClientAuth, Trust};
use nubis_pki::{ClusterCa, JoinToken};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default lifetime of a join token.
pub const DEFAULT_JOIN_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Timeout of a controller's call to an agent (console logs).
const AGENT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a join or a registration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid, used or expired join token")]
    BadJoinToken,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The cluster CA and this controller's certificate.
pub struct Cluster {
    ca: ClusterCa,
    controller: IssuedPair,
    /// Mutual-TLS clients for each host's agent, each accepting only that
    /// host's certificate.
    agent_clients: Mutex<HashMap<HostId, reqwest::Client>>,
}

impl Cluster {
    /// Loads (or on first use creates) the CA in `data_dir` and gives this
    /// controller a fresh certificate from it.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let ca = ClusterCa::load_or_create(data_dir).context("the cluster CA")?;
        let controller = ca.issue_controller()?;
        Ok(Self {
            ca,
            controller,
            agent_clients: Mutex::default(),
        })
    }

    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// TLS of the agent protocol's listener: this controller's certificate
    /// (with the CA, so joining agents can compare it with their token),
    /// client certificates of the CA asked for but not required (a join
    /// has none; every other call checks it, see `AgentCaller`).
    pub fn agent_protocol_tls(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let chain = format!("{}{}", self.controller.cert_pem, self.ca.cert_pem());
        cluster_server_config(
            self.ca.cert_der(),
            &chain,
            &self.controller.key_pem,
            ClientAuth::Optional,
        )
    }

    /// A client TLS configuration for calls to `host`'s agent: shows this
    /// controller's certificate, accepts only `host`'s, for the name called.
    pub fn agent_tls(&self, host: HostId) -> anyhow::Result<rustls::ClientConfig> {
        cluster_client_config(
            Trust::Ca(self.ca.cert_der().to_vec()),
            Role::Host(host.to_string()),
            Some((&self.controller.cert_pem, &self.controller.key_pem)),
        )
    }

    /// The HTTP client for `host`'s agent (made once, then reused).
    pub fn agent_http(&self, host: HostId) -> anyhow::Result<reqwest::Client> {
        let mut clients = self.agent_clients.lock().expect("agent clients lock");
        if let Some(client) = clients.get(&host) {
            return Ok(client.clone());
        }
        let client = nubis_pki::tls::reqwest_client(
            self.agent_tls(host)?,
            reqwest::Client::builder().timeout(AGENT_CALL_TIMEOUT),
        )?;
        clients.insert(host, client.clone());
        Ok(client)
    }

    /// Makes a join token valid for `ttl`; only its hash is stored.
    pub async fn issue_join_token(
        &self,
        store: &Store,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<JoinToken> {
        issue_join_token(&self.ca, store, ttl, now).await
    }

    /// A host joins: the token is spent, the host registered (or, for a
    /// name already known, updated: the token is the operator's say-so),
    /// and a certificate issued for its id and its URL's host; earlier
    /// certificates of that host stop being accepted.
    pub async fn join(
        &self,
        store: &Store,
        req: &JoinRequest,
        now: DateTime<Utc>,
    ) -> Result<JoinResponse, ClusterError> {
        let url_host = agent_url_host(&req.host)?;
        nubis_pki::ca::check_csr(&req.csr_pem).map_err(|e| ClusterError::Invalid(e.to_string()))?;
        if !store
            .use_join_token(&JoinToken::hash_of_secret(&req.secret), now)
            .await?
        {
            return Err(ClusterError::BadJoinToken);
        }
        let host = store.register_host(&req.host).await?;
        let cert_pem = self
            .ca
            .issue_host(&host.id.to_string(), &url_host, &req.csr_pem)
            .map_err(|e| ClusterError::Invalid(e.to_string()))?;
        let fingerprint = nubis_pki::fingerprint(&nubis_pki::ca::pem_to_der(&cert_pem)?);
        store.set_host_certificate(host.id, &fingerprint).await?;
        self.agent_clients
            .lock()
            .expect("agent clients lock")
            .remove(&host.id);
        tracing::info!(host = %host.name, id = %host.id, url = %host.url, "host joined the cluster");
        Ok(JoinResponse {
            host,
            cert_pem,
            ca_pem: self.ca.cert_pem().to_owned(),
        })
    }
}

/// Makes a join token for the CA `ca`, valid for `ttl` (also used by
/// `nubis admin join-token`, which has the CA but no running controller).
pub async fn issue_join_token(
    ca: &ClusterCa,
    store: &Store,
    ttl: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<JoinToken> {
    let token = JoinToken::generate(&ca.fingerprint())?;
    let ttl = chrono::Duration::from_std(ttl).context("join token lifetime")?;
    store
        .add_join_token(&token.secret_hash(), now + ttl, now)
        .await?;
    Ok(token)
}

/// The host part of an agent's URL, which must be `https://`.
fn agent_url_host(req: &RegisterHost) -> Result<String, ClusterError> {
    if !req.url.starts_with("https://") {
        return Err(ClusterError::Invalid(format!(
            "the agent URL must be https://, got {}",
            req.url
        )));
    }
    url_host(&req.url)
        .ok_or_else(|| ClusterError::Invalid(format!("invalid agent URL {}", req.url)))
}

/// Whether a host with certificate `identity` (already checked to be its
/// current one) may register as `req`: the name must be its own, and the
/// URL one its certificate names.
pub async fn check_registration(
    store: &Store,
    host: HostId,
    identity: &PeerIdentity,
    req: &RegisterHost,
) -> Result<(), ClusterError> {
    if store.host_id_by_name(&req.name).await? != Some(host) {
        return Err(ClusterError::Forbidden(format!(
            "this host certificate is not for host '{}'",
            req.name
        )));
    }
    agent_url_host(req)?;
    if !identity.names_url_host(&req.url) {
        return Err(ClusterError::Forbidden(format!(
            "the agent URL {} does not match the host's certificate (join again for a new address)",
            req.url
        )));
    }
    Ok(())
}
