//! The graphical console: short-lived single-use tokens, the websocket proxy
//! to the agent's VNC endpoint, and the noVNC page.
//!
//! - `POST /v1/servers/{id}/console` (own project, running server) issues a
//!   token bound to the user and the server and answers the page's URL with
//!   the token in the fragment (`#token=`), which browsers never send.
//! - `GET /console/{id}` is the page; it loads noVNC from `/static/novnc/`.
//! - `GET /v1/console/websocket` is the proxy. The token travels in the
//!   `Sec-WebSocket-Protocol` header (`nubis-console.<token>`), never in the
//!   URI, so request logs cannot hold it. Order of checks, all before the
//!   upgrade: `Origin` must be the controller's public origin (403), the
//!   token must be known and unexpired; it is consumed at once (401
//!   otherwise); the server must still be the token's and running; then the
//!   agent's websocket is opened and frames are piped both ways.
//! - A session ends when either side closes, when the agent closes (QEMU
//!   exited: stopped or deleted), or as soon as the server is asked to stop
//!   or be deleted (checked on every change of desired state).
//!
//! Tokens live in the store, by their SHA-256 (`store/console_tokens.rs`):
//! with several controllers on one database, a link issued by one is
//! redeemed at any of them, exactly once.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, Caller};
use super::AppState;
use crate::auth::token_hash;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use nubis_api::agent::PowerState;
use nubis_api::console::{ConsoleAccess, CONSOLE_TOKEN_PROTOCOL_PREFIX, CONSOLE_WS_PROTOCOL};
use nubis_api::servers::ServerStatus;
use nubis_api::{ErrorBody, ProjectId, ServerId};
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::tungstenite;

/// Prefix of console tokens (API tokens use `nbs_`).
const TOKEN_PREFIX: &str = "nbc_";

/// At most this many unexpired tokens are outstanding at once.
const MAX_OUTSTANDING: u64 = 10_000;

/// How long the agent gets to accept the proxied websocket.
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the console is offered.
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// The URL browsers use to reach this controller, e.g.
    /// `https://cloud.example.com`. Console links are built from it, and its
    /// origin is the only `Origin` the websocket accepts. None: the address
    /// the controller listens on, as `http://ADDR`.
    pub public_url: Option<String>,
    /// Lifetime of a console token.
    pub token_ttl: Duration,
    /// Where noVNC lives (Debian's `novnc` package).
    pub novnc_dir: PathBuf,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            token_ttl: Duration::from_secs(60),
            novnc_dir: "/usr/share/novnc".into(),
        }
    }
}

/// The public URL (no trailing slash) and the origin derived from it.
#[derive(Clone, Debug)]
pub struct PublicUrl {
    pub base: String,
    pub origin: String,
}

impl PublicUrl {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(raw).map_err(|e| anyhow::anyhow!("{raw}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            anyhow::bail!("{raw}: must be an http(s) URL with a host");
        }
        if url.query().is_some() || url.fragment().is_some() {
            anyhow::bail!("{raw}: must have no query or fragment");
        }
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            origin: url.origin().ascii_serialization(),
        })
    }

    /// Whether an `Origin` header names this origin (scheme, host, port;
    /// default ports and case do not matter). `null` and garbage do not.
    pub fn allows_origin(&self, origin: &str) -> bool {
        reqwest::Url::parse(origin)
            .map(|u| u.origin().ascii_serialization() == self.origin)
            .unwrap_or(false)
    }
}

pub use crate::store::ConsoleGrant as Grant;

/// A fresh console token: `nbc_` and 256 random bits in hex.
fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// Open the graphical console of a running server: a single-use link.
#[utoipa::path(post, path = "/v1/servers/{id}/console", tag = "servers",
    params(("id" = String, Path)),
    responses((status = 201, body = ConsoleAccess), (status = 404, body = ErrorBody),
        (status = 409, description = "the server is not running", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<(StatusCode, HeaderMap, Json<ConsoleAccess>)> {
    let server = super::servers::find(&state, &caller, id).await?;
    let status = server.status();
    if status != ServerStatus::Running || server.host.is_none() {
        return Err(ApiError::conflict(format!(
            "only a running server has a console; this one is {status}"
        )));
    }
    let now = state.clock.now();
    let expires_at =
        now + chrono::Duration::from_std(state.console.token_ttl).unwrap_or(chrono::Duration::MAX);
    let token = new_token()
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()))?;
    let grant = Grant {
        server: id,
        user: caller.user.id,
        project: caller.user.project,
        expires_at,
    };
    state
        .store
        .issue_console_token(&token_hash(&token), &grant, now, MAX_OUTSTANDING)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", m)
            }
            e => ApiError::from(e),
        })?;
    tracing::info!(server = %id, user = %caller.user.id, "console token issued");
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((
        StatusCode::CREATED,
        headers,
        Json(ConsoleAccess {
            url: format!("{}/console/{id}#token={token}", state.public_url.base),
            token,
            expires_at,
        }),
    ))
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// The token offered as a `nubis-console.<token>` subprotocol, if any.
fn offered_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(CONSOLE_TOKEN_PROTOCOL_PREFIX))
        .map(str::to_owned)
}

/// The console websocket: RFB (VNC) in binary frames, proxied to the agent.
///
/// A websocket upgrade from the controller's own origin (`Origin` must be
/// the origin of its public URL) offering the subprotocols `binary` and
/// `nubis-console.<token>`, the token from `POST /v1/servers/{id}/console`.
/// The token works once; the session closes when the server stops or is deleted.
#[utoipa::path(get, path = "/v1/console/websocket", tag = "servers",
    responses((status = 101, description = "switching to the websocket (subprotocol `binary`)"),
        (status = 401, description = "token missing, unknown, used or expired", body = ErrorBody),
        (status = 403, description = "`Origin` is not this cloud's", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the server is no longer running", body = ErrorBody),
        (status = 502, description = "the server's host did not open its console", body = ErrorBody)))]
pub async fn websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !state.public_url.allows_origin(origin) {
        tracing::warn!(origin = %origin, "console websocket from a foreign origin refused");
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "the console only opens from this cloud's own pages",
        );
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(token) = offered_token(&headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "console_token_missing",
            "offer the console token as the subprotocol 'nubis-console.<token>'",
        );
    };
    let redeemed = state
        .store
        .redeem_console_token(&token_hash(&token), state.clock.now())
        .await;
    let grant = match redeemed {
        Ok(grant) => grant,
        Err(e) => {
            tracing::warn!(error = %e, "console websocket: cannot redeem the token");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the console link cannot be checked now; try again",
            );
        }
    };
    let Some(grant) = grant else {
        tracing::warn!("console websocket with an unknown, used or expired token refused");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "console_token_invalid",
            "the console link is unknown, expired or already used; ask for a new one",
        );
    };
    let server = match state.store.server(grant.project, grant.server).await {
        Ok(s) => s,
        Err(_) => return refuse(StatusCode::NOT_FOUND, "not_found", "server not found"),
    };
    let (true, Some(host_id)) = (server.status() == ServerStatus::Running, server.host) else {
        return refuse(
            StatusCode::CONFLICT,
            "conflict",
            "the server is no longer running",
        );
    };
    let agent = match connect_agent(&state, host_id, grant.server).await {
        Ok(agent) => agent,
        Err(e) => {
            tracing::warn!(server = %grant.server, error = %format!("{e:#}"), "console: the host's VNC endpoint failed");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "host_unreachable",
                "the server's host did not open its console",
            );
        }
    };
    tracing::info!(server = %grant.server, user = %grant.user, "console session opened");
    ws.protocols([CONSOLE_WS_PROTOCOL])
        .on_upgrade(move |socket| async move {
            pipe(&state, grant.project, grant.server, socket, agent).await;
            tracing::info!(server = %grant.server, user = %grant.user, "console session closed");
        })
        .into_response()
}

type AgentSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens the agent's VNC websocket over mutual TLS, at the URL recorded for
/// the host, accepting only that host's certificate.
async fn connect_agent(
    state: &AppState,
    host: nubis_api::HostId,
    server: ServerId,
) -> anyhow::Result<AgentSocket> {
    use tungstenite::client::IntoClientRequest;
    let host_id = host;
    let host = state.store.host(host).await?;
    let base = host.url.trim_end_matches('/');
    let Some(rest) = base.strip_prefix("https://") else {
        anyhow::bail!("unsupported agent URL {base}");
    };
    let request = format!("wss://{rest}/v1/instances/{server}/vnc").into_client_request()?;
    let uri = request.uri().clone();
    let name = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tls =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(state.cluster.agent_tls(host_id)?));
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((name.as_str(), port)).await?;
        let stream = tls.connect(server_name, tcp).await?;
        let (socket, _) = tokio_tungstenite::client_async(request, stream).await?;
        anyhow::Ok(socket)
    };
    tokio::time::timeout(AGENT_CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))?
}

/// Whether the server should still show its console: it exists, and is
/// neither being deleted nor asked to stop.
async fn still_wanted(state: &AppState, project: ProjectId, server: ServerId) -> bool {
    match state.store.server(project, server).await {
        Ok(s) => !s.deleting && s.power == PowerState::Running,
        Err(crate::store::StoreError::NotFound) => false,
        Err(_) => true,
    }
}

/// Pipes frames between the browser and the agent until either closes or
/// the server is asked to stop or be deleted.
async fn pipe(
    state: &AppState,
    project: ProjectId,
    server: ServerId,
    browser: WebSocket,
    agent: AgentSocket,
) {
    let (mut to_browser, mut from_browser) = browser.split();
    let (mut to_agent, mut from_agent) = agent.split();
    let upstream = async {
        while let Some(Ok(msg)) = from_agent.next().await {
            let go_on = match msg {
                tungstenite::Message::Binary(b) => {
                    to_browser.send(Message::Binary(b)).await.is_ok()
                }
                tungstenite::Message::Close(_) => false,
                _ => true,
            };
            if !go_on {
                break;
            }
        }
        let _ = to_browser.send(Message::Close(None)).await;
    };
    let downstream = async {
        while let Some(Ok(msg)) = from_browser.next().await {
            let go_on = match msg {
                Message::Binary(b) => to_agent.send(tungstenite::Message::Binary(b)).await.is_ok(),
                Message::Close(_) => false,
                _ => true,
            };
            if !go_on {
                break;
            }
        }
        let _ = to_agent.send(tungstenite::Message::Close(None)).await;
    };
    let mut changes = state.revision.subscribe();
    let watch = async {
        loop {
            if changes.changed().await.is_err() {
                // The controller is shutting down.
                return;
            }
            if !still_wanted(state, project, server).await {
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = watch => {
            if let Err(e) = state.store.revoke_console_tokens(server).await {
                tracing::warn!(%server, error = %e, "cannot revoke console tokens");
            }
        }
    }
}

/// The console page and its assets, outside `/v1`: `/console/{id}`,
/// `/static/console/*`, and noVNC's `core/` and `vendor/` under `/static/novnc/`.
pub fn pages(novnc_dir: &std::path::Path) -> axum::Router<AppState> {
    use axum::routing::get;
    use tower_http::services::ServeDir;
    axum::Router::new()
        .route("/console/{id}", get(page))
        .route("/static/console/console.js", get(script))
        .route("/static/console/console.css", get(stylesheet))
        .nest_service("/static/novnc/core", ServeDir::new(novnc_dir.join("core")))
        .nest_service(
            "/static/novnc/vendor",
            ServeDir::new(novnc_dir.join("vendor")),
        )
}

/// The console page: noVNC, fed by `/v1/console/websocket`.
pub async fn page(ApiPath(_id): ApiPath<ServerId>) -> Response {
    static_asset(PAGE, "text/html; charset=utf-8")
}

pub async fn script() -> Response {
    static_asset(SCRIPT, "text/javascript; charset=utf-8")
}

pub async fn stylesheet() -> Response {
    static_asset(STYLE, "text/css; charset=utf-8")
}

const PAGE: &str = include_str!("console/page.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

fn static_asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
    }

    #[test]
    fn origins_must_match_exactly() {
        let p = PublicUrl::parse("http://127.0.0.1:8780/").unwrap();
        assert_eq!(p.base, "http://127.0.0.1:8780");
        assert!(p.allows_origin("http://127.0.0.1:8780"));
        assert!(!p.allows_origin("http://evil.example"));
        assert!(!p.allows_origin("https://127.0.0.1:8780"));
        assert!(!p.allows_origin("http://127.0.0.1:8781"));
        assert!(!p.allows_origin("null"));
        assert!(!p.allows_origin(""));
        let p = PublicUrl::parse("https://Cloud.Example.com").unwrap();
        assert!(p.allows_origin("https://cloud.example.com:443"));
        assert!(!p.allows_origin("https://cloud.example.com.evil.example"));
        assert!(PublicUrl::parse("ftp://x").is_err());
        assert!(PublicUrl::parse("http://x/?a=b").is_err());
    }

    #[test]
    fn the_token_comes_from_the_subprotocol() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("binary, nubis-console.nbc_abc"),
        );
        assert_eq!(offered_token(&h).as_deref(), Some("nbc_abc"));
        assert_eq!(offered_token(&HeaderMap::new()), None);
    }
}
