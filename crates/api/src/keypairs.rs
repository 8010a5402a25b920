//! SSH key pairs.

use crate::{Name, ProjectId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest public key accepted (a 16384-bit RSA key is ~2.8 KB).
pub const MAX_PUBLIC_KEY_LEN: usize = 8192;

/// `POST /v1/keypairs`: import `public_key`, or leave it out to have an
/// ed25519 key generated (its private half is returned once).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeypair {
    pub name: Name,
    #[serde(default)]
    pub public_key: Option<String>,
}

/// A key pair (never with its private key, which Nubis does not keep).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Keypair {
    pub id: crate::KeypairId,
    pub name: String,
    pub project: ProjectId,
    /// OpenSSH format, e.g. `ssh-ed25519 AAAA... comment`.
    pub public_key: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/keypairs` answer; `private_key` only when generated.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedKeypair {
    #[serde(flatten)]
    pub keypair: Keypair,
    /// OpenSSH private key; shown only in this answer.
    pub private_key: Option<String>,
}
