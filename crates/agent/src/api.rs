//! The agent's own small API, used by the controller: console logs and the
//! graphical console (VNC over a websocket). Served over mutual TLS with the
//! host certificate; only a controller's client certificate gets in.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use nubis_api::ServerId;
use nubis_pki::serve::Peer;
use nubis_pki::Role;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::layout::Layout;

/// The most console output returned: the tail of the log.
pub const CONSOLE_LOG_TAIL: u64 = 1024 * 1024;

#[derive(Clone)]
struct ApiState {
    layout: Layout,
    departures: crate::moves::Departures,
}

/// The routes; serve them with `nubis_pki::serve::serve_tls`, which
/// records the client's certificate in each request.
pub fn router(layout: Layout, departures: crate::moves::Departures) -> Router {
    Router::new()
        .route("/v1/instances/{id}/console-log", get(console_log))
        .route("/v1/instances/{id}/vnc", get(vnc))
        .route("/v1/instances/{id}/disk", get(disk))
        .with_state(ApiState { layout, departures })
}

/// A departing instance's disk, for the target host of its departure only
/// (see [`crate::moves::departure`]).
async fn disk(
    State(state): State<ApiState>,
    peer: Option<axum::Extension<Peer>>,
    Path(id): Path<String>,
) -> Result<Response, StatusCode> {
    let id: ServerId = id.parse().map_err(|_| StatusCode::NOT_FOUND)?;
    crate::moves::departure::serve_disk(&state.layout, &state.departures, peer.as_deref(), id).await
}

/// Only a controller may call: 401 without a client certificate (the TLS
/// handshake already demands one of the cluster CA), 403 for a host's.
fn authorize(peer: Option<&Peer>) -> Result<(), StatusCode> {
    match peer.and_then(|p| p.0.as_ref()).map(|id| &id.role) {
        Some(Role::Controller) => Ok(()),
        Some(Role::Host(_)) => Err(StatusCode::FORBIDDEN),
        None => Err(StatusCode::UNAUTHORIZED),
    }
}

async fn console_log(
    State(state): State<ApiState>,
    peer: Option<axum::Extension<Peer>>,
    Path(id): Path<String>,
) -> Result<String, StatusCode> {
    authorize(peer.as_deref())?;
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
    peer: Option<axum::Extension<Peer>>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, StatusCode> {
    authorize(peer.as_deref())?;
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
