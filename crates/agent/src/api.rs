//! The agent's own small API, used by the controller: console logs and the
//! graphical console (VNC over a websocket).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use nubis_api::agent::AGENT_TOKEN_HEADER;
use nubis_api::ServerId;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

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
        .route("/v1/instances/{id}/vnc", get(vnc))
        .with_state(ApiState {
            layout,
            token: token.into(),
        })
}

/// Checks the agent token header; the answer to a wrong one is 401.
fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), StatusCode> {
    let presented = headers
        .get(AGENT_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    if presented != Some(&*state.token) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    Ok(())
}

async fn console_log(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<String, StatusCode> {
    authorize(&state, &headers)?;
    let id: ServerId = id.parse().map_err(|_| StatusCode::NOT_FOUND)?;
    let path = state.layout.instance(id).console_log();
    // QEMU writes the log in its own directory: no following its links.
    let mut file = crate::jail::safe_fs::open_regular(&path)
        .map(tokio::fs::File::from_std)
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

/// The instance's VNC server as a websocket of binary frames. It connects to
/// QEMU's unix socket before upgrading (no running QEMU: 404) and ends when
/// either side closes; QEMU closes it when the instance stops or is deleted.
async fn vnc(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, StatusCode> {
    authorize(&state, &headers)?;
    let id: ServerId = id.parse().map_err(|_| StatusCode::NOT_FOUND)?;
    let socket = state.layout.instance(id).vnc_socket();
    let stream = crate::jail::safe_fs::connect(&socket)
        .await
        .map_err(|_| StatusCode::NOT_FOUND)?;
    tracing::info!(instance = %id, "VNC console session opened");
    Ok(ws.on_upgrade(move |ws| async move {
        pipe_vnc(ws, stream).await;
        tracing::info!(instance = %id, "VNC console session closed");
    }))
}

/// Copies bytes between the websocket and QEMU's VNC socket until either
/// side closes.
async fn pipe_vnc(ws: WebSocket, stream: tokio::net::UnixStream) {
    let (mut from_qemu, mut to_qemu) = stream.into_split();
    let (mut to_ws, mut from_ws) = ws.split();
    let upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from_qemu.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
                    if to_ws.send(frame).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = to_ws.send(Message::Close(None)).await;
    };
    let downstream = async {
        while let Some(Ok(msg)) = from_ws.next().await {
            let go_on = match msg {
                Message::Binary(b) => to_qemu.write_all(&b).await.is_ok(),
                Message::Close(_) => false,
                _ => true,
            };
            if !go_on {
                break;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
