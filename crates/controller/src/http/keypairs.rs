//! SSH key pairs: import a public key, or have one generated.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use crate::app::keypairs;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::keypairs::{CreateKeypair, CreatedKeypair, Keypair};
use nubis_api::{ErrorBody, KeypairId};

/// Import or generate a key pair.
#[utoipa::path(post, path = "/v1/keypairs", tag = "keypairs", request_body = CreateKeypair,
    responses((status = 201, body = CreatedKeypair), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateKeypair>,
) -> ApiResult<(StatusCode, Json<CreatedKeypair>)> {
    let (keypair, private_key) = keypairs::create_keypair(
        &state,
        caller.user.project,
        req.name.as_str(),
        req.public_key.as_deref(),
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
