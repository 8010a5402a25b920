//! `os-keypairs`: the project's SSH key pairs, named by name as in Nova.
//! Import and generation go through `app::keypairs`, as on `/v1`; the
//! fingerprint shown is Nubis's (SHA-256), not Nova's MD5 form.

use super::{parse_body, ComputeResult};
use crate::app::keypairs::create_keypair;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::openstack::auth::OsCaller;
use crate::openstack::errors::ComputeError;
use crate::openstack::token_body::keystone_time;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use nubis_api::keypairs::Keypair;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct CreateRequest {
    keypair: NovaKeypair,
}

#[derive(Deserialize)]
struct NovaKeypair {
    name: String,
    #[serde(default)]
    public_key: Option<String>,
    /// 2.2+: `ssh` or `x509`; only `ssh` exists here.
    #[serde(default, rename = "type")]
    key_type: Option<String>,
}

fn summary(k: &Keypair) -> Value {
    json!({
        "name": k.name,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
    })
}

/// `GET /os-keypairs`: `{"keypairs": [{"keypair": {...}}]}`.
pub async fn list(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
) -> ComputeResult<Json<Value>> {
    let keypairs: Vec<Value> = state
        .store
        .list_keypairs(caller.user.project)
        .await?
        .iter()
        .map(|k| json!({ "keypair": summary(k) }))
        .collect();
    Ok(Json(json!({ "keypairs": keypairs })))
}

/// `POST /os-keypairs`: imports `public_key`, or makes a key pair and
/// answers its private key (once).
pub async fn create(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    body: Bytes,
) -> ComputeResult<Json<Value>> {
    let req: CreateRequest = parse_body(&body)?;
    let k = req.keypair;
    if k.key_type.as_deref().is_some_and(|t| t != "ssh") {
        return Err(ComputeError(ApiError::bad_request(
            "only ssh key pairs exist on Nubis",
        )));
    }
    let name: nubis_api::Name = k
        .name
        .parse()
        .map_err(|e| ComputeError(ApiError::bad_request(format!("Keypair name: {e}"))))?;
    let (keypair, private_key) = create_keypair(
        &state,
        caller.user.project,
        name.as_str(),
        k.public_key.as_deref(),
    )
    .await?;
    let mut body = summary(&keypair);
    body["user_id"] = json!(caller.user.id.to_string());
    if let Some(private_key) = private_key {
        body["private_key"] = json!(private_key);
    }
    Ok(Json(json!({ "keypair": body })))
}

/// `GET /os-keypairs/{name}`.
pub async fn show(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(name): Path<String>,
) -> ComputeResult<Json<Value>> {
    let k = by_name(&state, &caller, &name).await?;
    let mut body = summary(&k);
    body["user_id"] = json!(caller.user.id.to_string());
    body["created_at"] = json!(keystone_time(k.created_at));
    body["deleted"] = json!(false);
    body["deleted_at"] = Value::Null;
    body["updated_at"] = Value::Null;
    Ok(Json(json!({ "keypair": body })))
}

/// `DELETE /os-keypairs/{name}`: 202, as Nova.
pub async fn delete(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(name): Path<String>,
) -> ComputeResult<StatusCode> {
    let k = by_name(&state, &caller, &name).await?;
    state
        .store
        .delete_keypair(caller.user.project, k.id)
        .await
        .map_err(ApiError::from_store("key pair"))?;
    Ok(StatusCode::ACCEPTED)
}

/// The caller's project's key pair named `name` (by name only, as Nova);
/// another project's is not found.
async fn by_name(
    state: &AppState,
    caller: &crate::http::extract::Caller,
    name: &str,
) -> ComputeResult<Keypair> {
    let missing = || ComputeError(ApiError::not_found(&format!("Keypair {name}")));
    match state.store.keypair(caller.user.project, name).await {
        Ok(k) if k.name == name => Ok(k),
        Ok(_) | Err(crate::store::StoreError::NotFound) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}
