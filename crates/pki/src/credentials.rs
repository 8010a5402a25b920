//! A host's credentials on disk, in the agent's data dir: `pki/host.key`
//! (0600), `pki/host.crt` and `pki/ca.crt`. Made once, at join; every
//! later start uses them, so a join token is needed only once.

use crate::ca::write_private;
use crate::identity::{PeerIdentity, Role};
use crate::tls::{cluster_client_config, cluster_server_config, ClientAuth, Trust};
use crate::JoinToken;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// A host's key, its certificate and the cluster CA's, all PEM.
#[derive(Clone)]
pub struct HostCredentials {
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for HostCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCredentials").finish_non_exhaustive()
    }
}

impl HostCredentials {
    /// What a join gives: `key_pem` (the key whose CSR was sent) with the
    /// certificate and CA the controller answered. Refused unless that CA
    /// is the one `token` pins: a host keeps no credentials from anyone
    /// but the cluster that issued its token (the TLS of the join already
    /// pinned it; this checks what the answer says, too).
    pub fn from_join(
        token: &JoinToken,
        key_pem: String,
        cert_pem: String,
        ca_pem: String,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            crate::fingerprint(&crate::ca::pem_to_der(&ca_pem)?) == token.ca_fingerprint(),
            "the controller sent a CA other than the join token's"
        );
        Ok(Self {
            key_pem,
            cert_pem,
            ca_pem,
        })
    }

    fn dir(data_dir: &Path) -> PathBuf {
        data_dir.join("pki")
    }

    /// The stored credentials, if this host has joined.
    pub fn load(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let dir = Self::dir(data_dir);
        let read = |name: &str| std::fs::read_to_string(dir.join(name));
        match (read("host.key"), read("host.crt"), read("ca.crt")) {
            (Ok(key_pem), Ok(cert_pem), Ok(ca_pem)) => Ok(Some(Self {
                key_pem,
                cert_pem,
                ca_pem,
            })),
            (Err(e), _, _) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                Err(e).with_context(|| format!("reading the host credentials in {}", dir.display()))
            }
        }
    }

    /// Stores them (the key readable by its owner only; the key last, so
    /// a crash in between leaves no half set that `load` takes).
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let dir = Self::dir(data_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        write_private(&dir.join("ca.crt"), &self.ca_pem)?;
        write_private(&dir.join("host.crt"), &self.cert_pem)?;
        write_private(&dir.join("host.key"), &self.key_pem)?;
        Ok(())
    }

    /// What the host certificate says.
    pub fn identity(&self) -> anyhow::Result<PeerIdentity> {
        PeerIdentity::from_der(&crate::ca::pem_to_der(&self.cert_pem)?)
            .context("the host certificate names no host")
    }

    /// The host id the certificate is for.
    pub fn host_id(&self) -> anyhow::Result<String> {
        self.identity()?
            .host()
            .map(str::to_owned)
            .context("the host certificate names no host")
    }

    fn ca_der(&self) -> anyhow::Result<Vec<u8>> {
        crate::ca::pem_to_der(&self.ca_pem)
    }

    /// The agent's own API: this certificate, and controllers' client
    /// certificates required.
    pub fn server_config(&self) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
        let chain = format!("{}{}", self.cert_pem, self.ca_pem);
        cluster_server_config(&self.ca_der()?, &chain, &self.key_pem, ClientAuth::Required)
    }

    /// Calls to controllers: shows this certificate, accepts only a
    /// controller's.
    pub fn controller_client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> anyhow::Result<reqwest::Client> {
        let config = cluster_client_config(
            Trust::Ca(self.ca_der()?),
            Role::Controller,
            Some((&self.cert_pem, &self.key_pem)),
        )?;
        crate::tls::reqwest_client(config, builder)
    }

    /// Calls to another host's agent (a disk copied for a migration):
    /// shows this certificate, accepts only the certificate of host `host`
    /// (a UUID, as text) for the address in the URL.
    pub fn peer_client(
        &self,
        host: &str,
        builder: reqwest::ClientBuilder,
    ) -> anyhow::Result<reqwest::Client> {
        let config = cluster_client_config(
            Trust::Ca(self.ca_der()?),
            Role::Host(host.to_owned()),
            Some((&self.cert_pem, &self.key_pem)),
        )?;
        crate::tls::reqwest_client(config, builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{new_host_key, ClusterCa};

    #[test]
    fn a_join_keeps_credentials_only_from_the_tokens_ca() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ca = ClusterCa::load_or_create(ours.path()).unwrap();
        let other = ClusterCa::load_or_create(theirs.path()).unwrap();
        let token = JoinToken::generate(&ca.fingerprint()).unwrap();
        let (key_pem, csr_pem) = new_host_key().unwrap();
        let cert_pem = ca.issue_host("h-1", "10.0.0.7", &csr_pem).unwrap();
        let refused = HostCredentials::from_join(
            &token,
            key_pem.clone(),
            cert_pem.clone(),
            other.cert_pem().to_owned(),
        );
        assert!(
            refused.is_err_and(|e| e.to_string().contains("other than the join token's")),
            "another cluster's CA"
        );
        // Positive control: the token's own CA.
        let joined =
            HostCredentials::from_join(&token, key_pem, cert_pem, ca.cert_pem().to_owned())
                .unwrap();
        assert_eq!(joined.host_id().unwrap(), "h-1");
    }
}
