//! The source's side of a cold move: `GET /v1/instances/{id}/disk` on the
//! agent API serves a departing instance's disk to the host its departure
//! names, and to nobody else (another host's certificate, the controller's:
//! 403). The SHA-256 of the whole file goes in a header before the bytes,
//! so the target checks what it wrote; the server is stopped (a running
//! QEMU would change the disk under the copy: 409).

use super::Departures;
use crate::layout::Layout;
use crate::qemu::QemuProcess;
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use nubis_api::ServerId;
use nubis_pki::serve::Peer;
use nubis_pki::Role;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek};

/// The header carrying the disk's hex SHA-256.
pub const SHA256_HEADER: &str = "x-nubis-sha256";

/// Whether `peer` is the target host of instance `id`'s departure.
pub fn may_fetch(
    departures: &Departures,
    peer: Option<&Peer>,
    id: ServerId,
) -> Result<(), StatusCode> {
    let role = peer.and_then(|p| p.0.as_ref()).map(|i| &i.role);
    match role {
        None => Err(StatusCode::UNAUTHORIZED),
        Some(Role::Controller) => Err(StatusCode::FORBIDDEN),
        Some(Role::Host(host)) => match departures.get(id) {
            Some(d) if d.target.id.to_string() == *host => Ok(()),
            _ => Err(StatusCode::FORBIDDEN),
        },
    }
}

/// Streams instance `id`'s disk to its departure's target.
pub async fn serve_disk(
    layout: &Layout,
    departures: &Departures,
    peer: Option<&Peer>,
    id: ServerId,
) -> Result<Response, StatusCode> {
    may_fetch(departures, peer, id)?;
    if !QemuProcess::all_of(&id.to_string()).is_empty() {
        tracing::warn!(instance = %id, "refusing to serve the disk of a running instance");
        return Err(StatusCode::CONFLICT);
    }
    let path = layout.instance(id).disk();
    // `vm/` is QEMU's to write: no following a link planted there.
    let mut file = crate::jail::safe_fs::open_regular(&path).map_err(|_| StatusCode::NOT_FOUND)?;
    let (file, len, sha) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        file.rewind()?;
        Ok((file, len, hex::encode(hasher.finalize())))
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let target = departures.get(id).map(|d| d.target.id);
    tracing::info!(instance = %id, target = ?target, bytes = len, "serving disk to the target host");
    let file = tokio::fs::File::from_std(file);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(SHA256_HEADER, sha)
        .body(Body::from_stream(
            tokio_util::io::ReaderStream::with_capacity(file, 1 << 20),
        ))
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}
