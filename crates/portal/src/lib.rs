//! The self-service web portal: server-rendered pages at `/`, a thin client
//! of the `/v1` API.
//!
//! Every page calls the API router **in process** (`tower::ServiceExt::oneshot`)
//! with the session's bearer token, so validation, authorization and error
//! messages are exactly the API's; the portal only turns forms into JSON and
//! JSON into HTML.
//!
//! Sessions: logging in (`POST /v1/tokens`) yields an API token, kept in the
//! `nubis_session` cookie (HttpOnly, SameSite=Strict); logging out revokes it
//! (`DELETE /v1/tokens/current`). The session lives exactly as long as the
//! token: expiry and revocation are the API's.
//!
//! CSRF: every POST carries a `_csrf` field (uploads: an `X-CSRF-Token`
//! header). Signed in, it is SHA-256 over a domain tag and the session token:
//! the token is a 256-bit secret the browser's scripts cannot read, so there
//! is no extra server-side secret to keep or rotate, and the CSRF token dies
//! with the session. Before signing in (login, register) it is a random value
//! double-submitted in the `nubis_csrf` cookie.

mod admin;
mod admin_hosts;
mod auth;
pub mod headers;
mod images;
mod keypairs;
mod layout;
mod networks;
mod servers;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use tower::ServiceExt;

/// The session cookie: the API token of the signed-in user.
pub const SESSION_COOKIE: &str = "nubis_session";
/// The pre-login CSRF cookie (double submit).
pub const CSRF_COOKIE: &str = "nubis_csrf";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
/// The header carrying the CSRF token on script requests (uploads).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Largest API answer the portal reads (console logs are the big ones).
const MAX_API_ANSWER: usize = 16 * 1024 * 1024;

/// The portal's state: the API it is a client of.
#[derive(Clone)]
pub struct Portal {
    api: Router,
}

/// The portal pages, with the API router serving everything else (`/v1`).
pub fn router(api: Router) -> Router {
    let portal = Portal { api: api.clone() };
    Router::new()
        .route("/", get(servers::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/register", get(auth::register_page).post(auth::register))
        .route("/logout", post(auth::logout))
        .route("/servers", get(servers::list).post(servers::create))
        .route("/servers/new", get(servers::new))
        .route("/servers/poll", get(servers::poll))
        .route("/servers/{id}", get(servers::detail))
        .route("/servers/{id}/action", post(servers::action))
        .route("/servers/{id}/console", post(servers::console))
        .route("/images", get(images::list).post(images::create))
        .route("/images/{id}/delete", post(images::delete))
        .route(
            "/images/{id}/file",
            put(images::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/keypairs", get(keypairs::list).post(keypairs::create))
        .route("/keypairs/{id}/delete", post(keypairs::delete))
        .route("/networks", get(networks::list).post(networks::create))
        .route("/admin/hosts", get(admin_hosts::hosts))
        .route("/admin/hosts/{id}/{action}", post(admin_hosts::action))
        .route("/admin/servers", get(admin::servers))
        .route("/assets/portal.css", get(layout::css))
        .route("/assets/portal.js", get(layout::js))
        .with_state(portal)
        .fallback_service(api)
        .layer(axum::middleware::from_fn(remember_client))
        .layer(axum::middleware::map_response(
            headers::add_security_headers,
        ))
}

tokio::task_local! {
    /// The browser's address while a portal page runs, so the API calls it
    /// makes in process carry it (the audit trail records it).
    static CLIENT: Option<ConnectInfo<SocketAddr>>;
}

/// Keeps the client's address (from the server's `ConnectInfo`) for the
/// in-process API calls of this request.
async fn remember_client(req: Request<Body>, next: Next) -> Response {
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().copied();
    CLIENT.scope(client, next.run(req)).await
}

/// The user agent of the portal's in-process API calls, in the audit trail.
pub const PORTAL_USER_AGENT: &str = "nubis-portal";

/// An API answer: status, JSON body (Null when not JSON) and raw text.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    /// The API's `Retry-After` (429, 503), to pass on to the browser.
    pub retry_after: Option<HeaderValue>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The API's error message, for people. Only the API's own error
    /// messages and short plain-text refusals (4xx) are shown; anything
    /// else is summed up by its status.
    pub fn message(&self) -> String {
        let text = self.text.trim();
        match self.body["error"]["message"].as_str() {
            Some(m) => m.to_owned(),
            None if self.status.is_client_error() && !text.is_empty() && text.len() <= 300 => {
                text.to_owned()
            }
            None => format!("the request failed ({})", self.status),
        }
    }

    /// The body as a list (empty unless the API answered one).
    pub fn list(&self) -> Vec<Value> {
        match (&self.body, self.ok()) {
            (Value::Array(v), true) => v.clone(),
            _ => Vec::new(),
        }
    }
}

impl Portal {
    /// Calls the API in process as the holder of `token`.
    pub(crate) async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let (body, json) = match body {
            Some(v) => (Body::from(v.to_string()), true),
            None => (Body::empty(), false),
        };
        self.send(
            token,
            method,
            path,
            body,
            json.then_some("application/json"),
        )
        .await
    }

    /// Sends any body to the API in process.
    pub(crate) async fn send(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(USER_AGENT, PORTAL_USER_AGENT);
        // The browser's address, for the API's rules that need one
        // (login throttling, the audit trail).
        if let Ok(Some(client)) = CLIENT.try_with(|c| *c) {
            req = req.extension(client);
        }
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let Ok(req) = req.body(body) else {
            return Reply {
                status: StatusCode::BAD_REQUEST,
                body: Value::Null,
                text: "malformed request".into(),
                retry_after: None,
            };
        };
        let resp = match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let retry_after = resp.headers().get(axum::http::header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_API_ANSWER)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            retry_after,
        }
    }
}

/// A value of the `Cookie` header.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a signed-in session.
pub(crate) fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"nubis-portal-csrf\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// Compares without an early exit, so timing tells nothing.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// 32 random bytes, hex.
pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("randomness");
    hex::encode(bytes)
}

/// A submitted form, as ordered pairs.
pub(crate) struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed ("" if absent).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    /// The raw first value of `name` (not trimmed).
    pub fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// The signed-in user of a request; pages that need one redirect to the
/// login page without it.
pub(crate) struct Session {
    pub token: String,
    pub csrf: String,
    pub user: Value,
}

impl Session {
    pub fn name(&self) -> &str {
        self.user["name"].as_str().unwrap_or("")
    }

    pub fn admin(&self) -> bool {
        self.user["admin"].as_bool().unwrap_or(false)
    }

    pub fn project(&self) -> &str {
        self.user["project"].as_str().unwrap_or("")
    }

    /// Checks a form's CSRF token.
    #[allow(clippy::result_large_err)] // The refusal page is the handler's answer.
    pub fn check(&self, fields: &Fields) -> Result<(), Response> {
        if same(&self.csrf, fields.get(CSRF_FIELD)) {
            Ok(())
        } else {
            Err(csrf_refused())
        }
    }

    pub async fn call(
        &self,
        portal: &Portal,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        portal.call(Some(&self.token), method, path, body).await
    }

    pub async fn get(&self, portal: &Portal, path: &str) -> Reply {
        self.call(portal, Method::GET, path, None).await
    }

    /// A delete button's form: checks its CSRF token and that `id` can be
    /// part of a path, then `DELETE /v1/<collection>/<id>`. `Err` is the
    /// answer to give at once.
    #[allow(clippy::result_large_err)] // The refusal page is the handler's answer.
    pub async fn delete_from_form(
        &self,
        portal: &Portal,
        fields: Vec<(String, String)>,
        collection: &str,
        id: &str,
    ) -> Result<Reply, Response> {
        self.check(&Fields(fields))?;
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StatusCode::NOT_FOUND.into_response());
        }
        Ok(self
            .call(
                portal,
                Method::DELETE,
                &format!("/v1/{collection}/{id}"),
                None,
            )
            .await)
    }
}

impl FromRequestParts<Portal> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, portal: &Portal) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/login").into_response());
        };
        let me = portal
            .call(Some(&token), Method::GET, "/v1/users/me", None)
            .await;
        if !me.ok() {
            // Expired or revoked: forget it and sign in again.
            return Err((
                [(
                    axum::http::header::SET_COOKIE,
                    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
                )],
                Redirect::to("/login"),
            )
                .into_response());
        }
        Ok(Session {
            csrf: csrf_for(&token),
            token,
            user: me.body,
        })
    }
}

/// The answer to a POST without a valid CSRF token.
pub(crate) fn csrf_refused() -> Response {
    layout::error_page(
        StatusCode::FORBIDDEN,
        None,
        "Request refused",
        "This form was not sent from a current portal page (its security token is missing or \
         out of date). Go back, reload the page and try again.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_csrf() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; nubis_session=tok; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(csrf_for("x"), csrf_for("x"));
        assert_ne!(csrf_for("x"), csrf_for("y"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("ab", "abc"));
    }
}
