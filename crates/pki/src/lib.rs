//! The cluster's PKI and mutual TLS between controllers and agents.
//!
//! The controller keeps a cluster CA (`ca`). An agent joins with a
//! single-use join token (`join_token`) that also carries the CA's SHA-256,
//! so the agent can check it talks to the right controller before it has
//! the CA; it gets a host certificate naming its host id (`identity`) and
//! keeps it (`credentials`). From then on every call between controller and
//! agent is mutual TLS (`tls`, served by `serve`): each side proves who it
//! is with a certificate from the cluster CA, and checks the other's role.

pub mod ca;
pub mod credentials;
pub mod identity;
pub mod join_token;
pub mod serve;
pub mod tls;

pub use ca::ClusterCa;
pub use credentials::HostCredentials;
pub use identity::{PeerIdentity, Role};
pub use join_token::JoinToken;

/// The SHA-256 of DER bytes (a certificate), as lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}
