//! Identity v3 (Keystone): tokens. `POST /v3/auth/tokens` logs in with a
//! password (or trades a token for a new one), `GET`/`HEAD` validate the
//! token in `X-Subject-Token`, `DELETE` revokes it. The token is a Nubis
//! bearer token: issued by `app::login`, stored hashed, expiring; it works
//! on `/v1` as `Authorization: Bearer` and here as `X-Auth-Token`.
//!
//! A Nubis token belongs to a user, and every user has exactly one
//! project: so a token is always good for that project. A token asked for
//! unscoped is shown without project and catalog; scoping to another
//! project (or a domain, or the system) is refused with 401.

use super::auth::OsCaller;
use super::catalog::public_base;
use super::errors::IdentityError;
use super::token_body::{audit_id, is_default_domain, TokenView};
use crate::app::login::{self, LoginName};
use crate::auth::token_hash;
use crate::http::error::ApiError;
use crate::http::users::{client_ip, login_error, ClientAddress};
use crate::http::AppState;
use crate::store::StoreError;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nubis_api::users::User;
use serde::Deserialize;
use serde_json::Value;

/// The header a token is answered in (and, on validation, asked about).
pub const SUBJECT_TOKEN_HEADER: &str = "x-subject-token";

type IdentityResult<T> = Result<T, IdentityError>;

#[derive(Deserialize)]
struct AuthRequest {
    auth: Auth,
}

#[derive(Deserialize)]
struct Auth {
    identity: IdentityMethods,
    #[serde(default)]
    scope: Option<Value>,
}

#[derive(Deserialize)]
struct IdentityMethods {
    methods: Vec<String>,
    #[serde(default)]
    password: Option<PasswordMethod>,
    #[serde(default)]
    token: Option<TokenMethod>,
}

#[derive(Deserialize)]
struct PasswordMethod {
    user: PasswordUser,
}

#[derive(Deserialize)]
struct PasswordUser {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<DomainRef>,
    password: String,
}

#[derive(Deserialize)]
struct TokenMethod {
    id: String,
}

#[derive(Deserialize, Default)]
struct DomainRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct ProjectRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<DomainRef>,
}

/// `?nocatalog`: leave the catalog out of the token body.
#[derive(Deserialize, Default)]
pub struct CatalogQuery {
    #[serde(default)]
    nocatalog: Option<String>,
}

fn unauthorized(message: impl Into<String>) -> IdentityError {
    IdentityError(ApiError::unauthorized(message))
}

fn bad_request(message: impl Into<String>) -> IdentityError {
    IdentityError(ApiError::bad_request(message))
}

/// What a token request asks to be scoped to.
enum Scope {
    Unscoped,
    Project(ProjectRef),
}

fn parse_scope(scope: Option<Value>) -> IdentityResult<Scope> {
    let Some(scope) = scope else {
        return Ok(Scope::Unscoped);
    };
    if scope.as_str() == Some("unscoped") {
        return Ok(Scope::Unscoped);
    }
    let Value::Object(mut fields) = scope else {
        return Err(bad_request("scope must be an object"));
    };
    if let Some(project) = fields.remove("project") {
        let project: ProjectRef = serde_json::from_value(project)
            .map_err(|e| bad_request(format!("scope.project: {e}")))?;
        return Ok(Scope::Project(project));
    }
    // Domain, system and trust scopes: Nubis has none of them.
    Err(unauthorized(
        "Nubis issues project-scoped and unscoped tokens only",
    ))
}

/// `POST /v3/auth/tokens`.
pub async fn issue(
    State(state): State<AppState>,
    client: ClientAddress,
    audit: crate::audit::AuditSlot,
    Query(query): Query<CatalogQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> IdentityResult<Response> {
    let req: AuthRequest = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("Invalid input for field 'auth': {e}")))?;
    let auth = req.auth;
    let methods: Vec<&str> = auth.identity.methods.iter().map(String::as_str).collect();
    let (user, not_after) = match methods.as_slice() {
        ["password"] => {
            let p = auth
                .identity
                .password
                .ok_or_else(|| bad_request("'password' is required by the password method"))?;
            (
                password_user(&state, p.user, client_ip(&client), &audit).await?,
                None,
            )
        }
        ["token"] => {
            let t = auth
                .identity
                .token
                .ok_or_else(|| bad_request("'token' is required by the token method"))?;
            let record = state
                .store
                .token(&token_hash(&t.id))
                .await
                .map_err(not_a_token)?;
            audit.user(&record.user);
            (record.user, Some(record.expires_at))
        }
        _ => {
            return Err(unauthorized(
                "Nubis accepts the password and token authentication methods, one at a time",
            ))
        }
    };
    let project_name = match parse_scope(auth.scope)? {
        Scope::Unscoped => None,
        Scope::Project(p) => Some(check_project(&state, &user, &p).await?),
    };
    let issued = login::issue_token(&state, user.id, not_after)
        .await
        .map_err(|e| IdentityError(login_error(e)))?;
    let base = public_base(&state, &headers);
    let body = TokenView {
        user: &user,
        project_name: project_name.as_deref(),
        methods: &methods,
        issued_at: issued.issued_at,
        expires_at: issued.expires_at,
        audit_id: audit_id(&token_hash(&issued.token)),
        catalog_base: query.nocatalog.is_none().then_some(base.as_str()),
    }
    .render();
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    let value = HeaderValue::from_str(&issued.token).map_err(ApiError::internal)?;
    response.headers_mut().insert(SUBJECT_TOKEN_HEADER, value);
    Ok(response)
}

/// The user a password method names, if the password is right. A user
/// named by name must be in the default domain.
async fn password_user(
    state: &AppState,
    user: PasswordUser,
    address: Option<std::net::IpAddr>,
    audit: &crate::audit::AuditSlot,
) -> IdentityResult<User> {
    let who = match (&user.id, &user.name) {
        (Some(id), _) => LoginName::Id(
            id.parse()
                .map_err(|_| unauthorized("The request you have made requires authentication."))?,
        ),
        (None, Some(name)) => {
            let domain = user.domain.unwrap_or_default();
            if !is_default_domain(domain.id.as_deref(), domain.name.as_deref()) {
                return Err(unauthorized(
                    "users are in the 'Default' domain (id 'default'), the only one",
                ));
            }
            LoginName::Name(name)
        }
        (None, None) => return Err(bad_request("the user needs an 'id' or a 'name'")),
    };
    let record = login::check_password(state, who, &user.password, address, Some(audit))
        .await
        .map_err(|e| match e {
            login::LoginError::Denied => {
                unauthorized("The request you have made requires authentication.")
            }
            other => IdentityError(login_error(other)),
        })?;
    Ok(record.user)
}

/// The name of the project `p` names, if it is `user`'s own.
async fn check_project(state: &AppState, user: &User, p: &ProjectRef) -> IdentityResult<String> {
    let name = state
        .store
        .project_name(user.project)
        .await
        .map_err(ApiError::from_store("project"))?;
    let ours = match (&p.id, &p.name) {
        (Some(id), _) => *id == user.project.to_string(),
        (None, Some(asked)) => {
            let domain = p.domain.as_ref();
            let in_default =
                domain.is_some_and(|d| is_default_domain(d.id.as_deref(), d.name.as_deref()));
            in_default && *asked == name
        }
        (None, None) => return Err(bad_request("the project needs an 'id' or a 'name'")),
    };
    if !ours {
        return Err(unauthorized(format!(
            "User {} has no access to that project (a Nubis user has its own project only)",
            user.id
        )));
    }
    Ok(name)
}

fn not_a_token(e: StoreError) -> IdentityError {
    match e {
        StoreError::NotFound => unauthorized("The request you have made requires authentication."),
        other => IdentityError(other.into()),
    }
}

/// The subject token of a validation or revocation, if the caller may see
/// it: its own, or any for admins. Others' are "not found".
async fn subject(
    state: &AppState,
    caller: &OsCaller,
    headers: &HeaderMap,
) -> IdentityResult<(String, crate::store::TokenRecord)> {
    let raw = headers
        .get(SUBJECT_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad_request("the X-Subject-Token header is required"))?;
    let hash = token_hash(raw);
    let not_found = || IdentityError(ApiError::not_found("token"));
    let record = match state.store.token(&hash).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    let caller = &caller.0.user;
    if record.user.id != caller.id && !caller.admin {
        return Err(not_found());
    }
    Ok((hash, record))
}

/// `GET` and `HEAD /v3/auth/tokens`: validates `X-Subject-Token`.
pub async fn validate(
    State(state): State<AppState>,
    caller: OsCaller,
    Query(query): Query<CatalogQuery>,
    headers: HeaderMap,
) -> IdentityResult<Response> {
    let (hash, record) = subject(&state, &caller, &headers).await?;
    let project_name = state
        .store
        .project_name(record.user.project)
        .await
        .map_err(ApiError::from_store("project"))?;
    let base = public_base(&state, &headers);
    let body = TokenView {
        user: &record.user,
        project_name: Some(&project_name),
        methods: &["password"],
        issued_at: record.issued_at,
        expires_at: record.expires_at,
        audit_id: audit_id(&hash),
        catalog_base: query.nocatalog.is_none().then_some(base.as_str()),
    }
    .render();
    let mut response = Json(body).into_response();
    if let Some(v) = headers.get(SUBJECT_TOKEN_HEADER) {
        response
            .headers_mut()
            .insert(SUBJECT_TOKEN_HEADER, v.clone());
    }
    Ok(response)
}

/// `DELETE /v3/auth/tokens`: revokes `X-Subject-Token`.
pub async fn revoke(
    State(state): State<AppState>,
    caller: OsCaller,
    headers: HeaderMap,
) -> IdentityResult<StatusCode> {
    let (hash, _) = subject(&state, &caller, &headers).await?;
    state.store.delete_token(&hash).await?;
    Ok(StatusCode::NO_CONTENT)
}
