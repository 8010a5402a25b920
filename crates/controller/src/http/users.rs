//! Registration, login and logout.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Caller};
use super::AppState;
use crate::accounts::Registration;
use crate::auth::{self, Busy};
use crate::login_throttle::{Throttled, ThrottledBy};
use crate::store::StoreError;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use nubis_api::users::{Credentials, RegistrationStatus, TokenResponse, User};
use nubis_api::ErrorBody;
use std::net::{IpAddr, SocketAddr};

/// The client's address, when the request came over the network (calls the
/// portal makes in process carry the address of the browser's request).
type ClientAddress = Option<Extension<ConnectInfo<SocketAddr>>>;

fn client_ip(client: &ClientAddress) -> Option<IpAddr> {
    client
        .as_ref()
        .map(|Extension(ConnectInfo(addr))| addr.ip())
}

/// 503 `busy`: too many password hashings are running and waiting.
fn busy(_: Busy) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "too many logins at once; try again in a moment",
    )
    .retry_after(1)
}

/// 429 for a throttled login attempt.
fn throttled(refused: Throttled) -> ApiError {
    let seconds = refused.retry_after_secs();
    let whose = match refused.by {
        ThrottledBy::User => "for this user",
        ThrottledBy::Address => "from this address",
    };
    ApiError::too_many_requests(
        format!("too many failed logins {whose}; try again in {seconds} s"),
        seconds,
    )
}

/// Register a user (never an admin: admins are made with `nubis admin
/// create-user --admin`). Answers 403 `registration_closed` unless the
/// controller runs with `--registration open`.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = Credentials,
    responses((status = 201, body = User), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<User>)> {
    if state.registration == Registration::Closed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registration_closed",
            "registration is closed on this cloud; ask its operator for an account",
        ));
    }
    let password = req.password.expose().to_owned();
    let hash = state
        .password_work
        .run(move || auth::hash_password(&password))
        .await
        .map_err(busy)?
        .map_err(ApiError::internal)?;
    let user = state
        .store
        .create_user(req.name.as_str(), &hash, false)
        .await?;
    tracing::info!(user = %user.name, "registered user");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Whether anyone may register (no token needed).
#[utoipa::path(get, path = "/v1/registration", tag = "users",
    responses((status = 200, body = RegistrationStatus)))]
pub async fn registration(State(state): State<AppState>) -> Json<RegistrationStatus> {
    Json(RegistrationStatus {
        registration: state.registration,
    })
}

/// Log in: trade a name and password for a bearer token. Failed logins are
/// throttled per user name and per client address (429 with `Retry-After`).
#[utoipa::path(post, path = "/v1/tokens", tag = "users", request_body = Credentials,
    responses((status = 201, body = TokenResponse), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddress,
    audit: crate::audit::AuditSlot,
    ApiJson(req): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let denied = || ApiError::unauthorized("wrong user name or password");
    let address = client_ip(&client);
    // Counted as a failure until it succeeds; refused before any hashing.
    let attempt = state
        .login_throttle
        .admit(req.name.as_str(), address, state.clock.now())
        .map_err(|refused| {
            tracing::info!(user = %req.name.as_str(), client = ?address, "login throttled");
            throttled(refused)
        })?;
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
    let hash = record.as_ref().map(|r| r.password_hash.clone());
    let password = req.password.expose().to_owned();
    let ok = state
        .password_work
        .run(move || {
            let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
            auth::verify_password(&password, hash)
        })
        .await
        .map_err(busy)?;
    let record = match (ok, record) {
        (true, Some(r)) => r,
        _ => {
            tracing::info!(user = %req.name.as_str(), client = ?address, "failed login");
            return Err(denied());
        }
    };
    state.login_throttle.succeeded(attempt);
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
