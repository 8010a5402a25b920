//! SSH key pairs: what a key must be to be imported, and making one when
//! none is given. `/v1/keypairs` and Nova's `os-keypairs` both call these.

use super::AppError;
use crate::http::AppState;
use nubis_api::keypairs::{Keypair, MAX_PUBLIC_KEY_LEN};
use nubis_api::ProjectId;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

/// Key types accepted on import (DSA is obsolete; RSA must be large enough).
const MIN_RSA_BITS: usize = 2048;

/// Checks an OpenSSH public key; returns it normalised and its fingerprint.
pub fn check_public_key(text: &str) -> Result<(String, String), String> {
    let text = text.trim();
    if text.len() > MAX_PUBLIC_KEY_LEN || text.contains(['\n', '\r']) {
        return Err("public_key must be a single OpenSSH public key line".into());
    }
    let key = PublicKey::from_openssh(text)
        .map_err(|e| format!("public_key is not a valid OpenSSH public key: {e}"))?;
    match key.algorithm() {
        Algorithm::Ed25519
        | Algorithm::Ecdsa { .. }
        | Algorithm::SkEd25519
        | Algorithm::SkEcdsaSha2NistP256 => {}
        Algorithm::Rsa { .. } => {
            let bits = key
                .key_data()
                .rsa()
                .map(|k| k.n.as_positive_bytes().map_or(0, |b| b.len() * 8))
                .unwrap_or(0);
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA keys must have at least {MIN_RSA_BITS} bits"));
            }
        }
        other => return Err(format!("{} keys are not accepted", other.as_str())),
    }
    let normalised = key.to_openssh().map_err(|e| e.to_string())?;
    Ok((normalised, key.fingerprint(HashAlg::Sha256).to_string()))
}

/// Imports `public_key` into `project` as `name`, or, without one, makes an
/// Ed25519 key pair and returns its private key too (shown only once).
pub async fn create_keypair(
    state: &AppState,
    project: ProjectId,
    name: &str,
    public_key: Option<&str>,
) -> Result<(Keypair, Option<String>), AppError> {
    let (public_key, private_key) = match public_key {
        Some(text) => (text.to_owned(), None),
        None => {
            let (public, private) = generate(name).map_err(AppError::Internal)?;
            (public, Some(private))
        }
    };
    let (public_key, fingerprint) = check_public_key(&public_key).map_err(AppError::Invalid)?;
    let keypair = state
        .store
        .create_keypair(project, name, &public_key, &fingerprint)
        .await?;
    Ok((keypair, private_key))
}

/// A new Ed25519 key pair commented `name`: (public line, private PEM).
fn generate(name: &str) -> Result<(String, String), String> {
    let key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .map_err(|e| e.to_string())?;
    let mut public = key.public_key().clone();
    public.set_comment(name);
    let private = key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?;
    let public = public.to_openssh().map_err(|e| e.to_string())?;
    Ok((public, private.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_checked() {
        let ok = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example";
        let (norm, fp) = check_public_key(ok).unwrap();
        assert!(norm.starts_with("ssh-ed25519 AAAA"));
        assert!(fp.starts_with("SHA256:"));
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-ed25519 notbase64!",
            "hello world",
            &format!("{ok}\n{ok}"),
        ] {
            assert!(check_public_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_keys_pass_the_import_check() {
        let (public, private) = generate("k1").unwrap();
        assert!(check_public_key(&public).is_ok());
        assert!(private.contains("OPENSSH PRIVATE KEY"));
    }
}
