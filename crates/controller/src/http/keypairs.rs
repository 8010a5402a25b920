//! SSH key pairs: import a public key, or have one generated.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::keypairs::{CreateKeypair, CreatedKeypair, Keypair, MAX_PUBLIC_KEY_LEN};
use nubis_api::{ErrorBody, KeypairId};
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

/// Import or generate a key pair.
#[utoipa::path(post, path = "/v1/keypairs", tag = "keypairs", request_body = CreateKeypair,
    responses((status = 201, body = CreatedKeypair), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateKeypair>,
) -> ApiResult<(StatusCode, Json<CreatedKeypair>)> {
    let (public_key, private_key) = match &req.public_key {
        Some(text) => (text.clone(), None),
        None => {
            let key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
                .map_err(ApiError::internal)?;
            let mut public = key.public_key().clone();
            public.set_comment(req.name.as_str());
            let private = key.to_openssh(LineEnding::LF).map_err(ApiError::internal)?;
            let public = public.to_openssh().map_err(ApiError::internal)?;
            (public, Some(private.to_string()))
        }
    };
    let (public_key, fingerprint) = check_public_key(&public_key).map_err(ApiError::bad_request)?;
    let keypair = state
        .store
        .create_keypair(
            caller.user.project,
            req.name.as_str(),
            &public_key,
            &fingerprint,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeypair {
            keypair,
            private_key,
        }),
    ))
}

/// List the project's key pairs.
#[utoipa::path(get, path = "/v1/keypairs", tag = "keypairs",
    responses((status = 200, body = [Keypair])), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Keypair>>> {
    Ok(Json(state.store.list_keypairs(caller.user.project).await?))
}

/// Show a key pair (by id or name).
#[utoipa::path(get, path = "/v1/keypairs/{id}", tag = "keypairs", params(("id" = String, Path)),
    responses((status = 200, body = Keypair), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Keypair>> {
    let k = state
        .store
        .keypair(caller.user.project, &id)
        .await
        .map_err(ApiError::from_store("key pair"))?;
    Ok(Json(k))
}

/// Delete a key pair (servers keep the key they were created with).
#[utoipa::path(delete, path = "/v1/keypairs/{id}", tag = "keypairs", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<KeypairId>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_keypair(caller.user.project, id)
        .await
        .map_err(ApiError::from_store("key pair"))?;
    Ok(StatusCode::NO_CONTENT)
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
}
