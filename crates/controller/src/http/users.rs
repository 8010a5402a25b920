//! Registration, login and logout.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Caller};
use super::AppState;
use crate::auth;
use crate::store::StoreError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::users::{Credentials, TokenResponse, User};
use nubis_api::ErrorBody;

/// Register a user; the first user of a cloud becomes an admin.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = Credentials,
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let password = req.password.expose().to_owned();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let user = state
        .store
        .create_user(req.name.as_str(), &hash, false)
        .await?;
    tracing::info!(user = %user.name, admin = user.admin, "registered user");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Log in: trade a name and password for a bearer token.
#[utoipa::path(post, path = "/v1/tokens", tag = "users", request_body = Credentials,
    responses((status = 201, body = TokenResponse), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    audit: crate::audit::AuditSlot,
    ApiJson(req): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let denied = || ApiError::unauthorized("wrong user name or password");
    let record = match state.store.user_by_name(req.name.as_str()).await {
        Ok(r) => Some(r),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    // The trail names the user a login (right or wrong) was for; an unknown
    // name is not kept (it may be a password typed in the wrong field).
    if let Some(r) = &record {
        audit.user(&r.user);
    }
    // Verify against a dummy hash for unknown users too, so timing does not
    // reveal which names exist.
    let hash = record
        .as_ref()
        .map(|r| r.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let password = req.password.expose().to_owned();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    let record = match (ok, record) {
        (true, Some(r)) => r,
        _ => return Err(denied()),
    };
    let token = auth::new_token().map_err(ApiError::internal)?;
    let expires_at = chrono::Utc::now()
        + chrono::Duration::from_std(state.token_ttl).map_err(ApiError::internal)?;
    state
        .store
        .insert_token(
            &auth::token_hash(&token),
            record.user.id,
            expires_at.timestamp_millis(),
        )
        .await?;
    let project = record.user.project;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token,
            expires_at,
            user: record.user,
            project,
        }),
    ))
}

/// A real argon2id hash of a random password, made once, so a login for an
/// unknown user costs what a wrong password costs.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let secret = auth::new_token().unwrap_or_default();
        auth::hash_password(&secret).unwrap_or_default()
    })
}

/// Log out: revoke the token used for this request.
#[utoipa::path(delete, path = "/v1/tokens/current", tag = "users",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    state.store.delete_token(&caller.token_hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling user.
#[utoipa::path(get, path = "/v1/users/me", tag = "users",
    responses((status = 200, body = User), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn me(caller: Caller) -> Json<User> {
    Json(caller.user)
}
