//! `POST /v1/agent/join`: a host joins the cluster with a join token and
//! gets its host certificate (the only agent call made without one).

use crate::agent::{Host, RegisterHost};
use serde::{Deserialize, Serialize};

/// What a joining agent sends.
#[derive(Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct JoinRequest {
    /// The secret part of the join token (`nubis admin join-token`).
    pub secret: String,
    /// A PKCS#10 signing request (PEM) for the host's new key; only its key
    /// is used.
    pub csr_pem: String,
    /// The host, as it registers. Its `url` must be `https://`; its host
    /// part is the only address the certificate is valid for.
    pub host: RegisterHost,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The controller's answer: the host and its credentials.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct JoinResponse {
    pub host: Host,
    /// The host certificate (PEM), for the host id in `host`.
    pub cert_pem: String,
    /// The cluster CA's certificate (PEM).
    pub ca_pem: String,
}
