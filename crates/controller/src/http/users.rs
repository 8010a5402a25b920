//! Registration, login and logout.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Caller};
use super::AppState;
use crate::accounts::Registration;
use crate::app::login::{self, LoginError, LoginName};
use crate::auth::{self, Busy};
use crate::login_throttle::{Throttled, ThrottledBy};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use nubis_api::users::{Credentials, RegistrationStatus, TokenResponse, User};
use nubis_api::ErrorBody;
use std::net::{IpAddr, SocketAddr};

/// The client's address, when the request came over the network (calls the
/// portal makes in process carry the address of the browser's request).
pub(crate) type ClientAddress = Option<Extension<ConnectInfo<SocketAddr>>>;

pub(crate) fn client_ip(client: &ClientAddress) -> Option<IpAddr> {
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
    let record = login::check_password(
        &state,
        LoginName::Name(req.name.as_str()),
        req.password.expose(),
        client_ip(&client),
        Some(&audit),
    )
    .await
    .map_err(login_error)?;
    let issued = login::issue_token(&state, record.user.id, None)
        .await
        .map_err(login_error)?;
    let project = record.user.project;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token: issued.token,
            expires_at: issued.expires_at,
            user: record.user,
            project,
        }),
    ))
}

/// The API's answer to a refused or failed login.
pub(crate) fn login_error(e: LoginError) -> ApiError {
    match e {
        LoginError::Denied => ApiError::unauthorized("wrong user name or password"),
        LoginError::Throttled(refused) => throttled(refused),
        LoginError::Busy(b) => busy(b),
        LoginError::Store(e) => e.into(),
        LoginError::Internal(m) => ApiError::internal(m),
    }
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
