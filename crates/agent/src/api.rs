//! The agent's own small API, used by the controller: console logs.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use nubis_api::agent::AGENT_TOKEN_HEADER;
use nubis_api::ServerId;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::layout::Layout;

/// The most console output returned: the tail of the log.
pub const CONSOLE_LOG_TAIL: u64 = 1024 * 1024;

#[derive(Clone)]
struct ApiState {
    layout: Layout,
    token: Arc<str>,
}

pub fn router(layout: Layout, token: &str) -> Router {
    Router::new()
        .route("/v1/instances/{id}/console-log", get(console_log))
        .with_state(ApiState {
            layout,
            token: token.into(),
        })
}

async fn console_log(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<String, StatusCode> {
    let presented = headers
        .get(AGENT_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    if presented != Some(&*state.token) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let id: ServerId = id.parse().map_err(|_| StatusCode::NOT_FOUND)?;
    let path = state.layout.instance(id).console_log();
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| StatusCode::NOT_FOUND)?;
    let len = file
        .metadata()
        .await
        .map_err(|_| StatusCode::NOT_FOUND)?
        .len();
    let start = len.saturating_sub(CONSOLE_LOG_TAIL);
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
