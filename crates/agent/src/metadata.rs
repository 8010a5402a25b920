//! The metadata service: OpenStack's (`/openstack/...`) and EC2's
//! (`/latest/meta-data/...`) metadata APIs, as guests reach them at
//! `http://169.254.169.254/` (DNAT'ed onto a listener of this module on
//! their network's gateway address).
//!
//! # Who is asking
//!
//! The asking instance is identified **only** by the TCP peer address of the
//! connection: the packet's source IP, which the host's anti-spoofing rules
//! tie to the instance's TAP and MAC. Nothing the guest sends takes part:
//! not `X-Forwarded-For`, `Forwarded`, `X-Real-IP` or any other header, not
//! `Host` or an absolute request URI, not an instance id in a path. Every
//! path, listings included, answers 404 to an address no local instance
//! has, to IPv6 peers (IPv4-mapped ones too), and to connections whose peer
//! is unknown (a router served without connect info), so the service fails
//! closed.
//!
//! # Paths (GET and HEAD; other methods 405, other paths 404)
//!
//! - OpenStack, for each of [`OPENSTACK_VERSIONS`]: `/openstack` (the
//!   versions), `/openstack/V/` (its files), `meta_data.json`,
//!   `network_data.json`, `user_data` (404 when there is none) and
//!   `vendor_data.json` (`{}`). cloud-init uses the newest dated version.
//! - EC2, for each of [`EC2_VERSIONS`]: `/` (the versions), `/V/`,
//!   `/V/meta-data/` (a listing), `instance-id` (the server's UUID, as in
//!   the OpenStack metadata, so cloud-init sees the same instance either
//!   way), `hostname` and `local-hostname` (`<hostname>.<domain>` of the
//!   asking NIC's network, the server's DNS name), `local-ipv4` (the asking
//!   NIC's address), `public-keys/` (`0=<name>` lines, 404 without keys),
//!   `public-keys/N/` (`openssh-key`), `public-keys/N/openssh-key`, and
//!   `/V/user-data` (404 when there is none).
//!
//! JSON is `application/json`, listings and values `text/plain`, user data
//! `application/octet-stream` (it may be binary, e.g. gzip).
//!
//! # Limits
//!
//! [`serve`] bounds what a guest can hold on the host: at most
//! [`LIMITS`]`.per_peer` open connections per source address and
//! `.total` in all (further connections are closed at once), and each
//! connection is closed after `.idle` without traffic or `.lifetime` in
//! all, including the connections still open when `serve` is dropped.

use crate::guest_data;
use anyhow::Context;
use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use nubis_api::agent::{InstanceSpec, NicSpec};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Finds the instance that owns a source address on this host.
pub trait InstanceDirectory: Send + Sync + 'static {
    fn by_address(&self, ip: Ipv4Addr) -> Option<InstanceSpec>;
}

type Directory = Arc<dyn InstanceDirectory>;

/// OpenStack metadata versions served (the same documents under each), as
/// on the config drive.
pub const OPENSTACK_VERSIONS: [&str; 2] = ["2012-08-10", "latest"];

/// EC2 metadata versions served (the same documents under each).
pub const EC2_VERSIONS: [&str; 2] = ["2009-04-04", "latest"];

/// Body of the 404 for a peer that is not a local instance.
const UNKNOWN_PEER: &str = "no instance on this host has your address\n";

/// Connection limits of [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections per source address.
    pub per_peer: usize,
    /// Open connections in all.
    pub total: usize,
    /// A connection without traffic for this long is closed.
    pub idle: Duration,
    /// A connection is closed this long after it was accepted.
    pub lifetime: Duration,
}

/// The limits [`serve`] uses.
pub const LIMITS: Limits = Limits {
    per_peer: 16,
    total: 1024,
    idle: Duration::from_secs(30),
    lifetime: Duration::from_secs(120),
};

/// Serves the metadata API on `listener` until the task is dropped/aborted.
pub async fn serve(
    listener: TcpListener,
    directory: Arc<dyn InstanceDirectory>,
) -> anyhow::Result<()> {
    serve_with_limits(listener, directory, LIMITS).await
}

async fn serve_with_limits(
    listener: TcpListener,
    directory: Directory,
    limits: Limits,
) -> anyhow::Result<()> {
    let local = listener
        .local_addr()
        .context("metadata service listener address")?;
    tracing::info!(%local, "metadata service listening");
    let listener = LimitedListener {
        inner: listener,
        limits,
        counts: Arc::default(),
    }
    // Also what gives `SocketAddr` connect info for a custom listener.
    .tap_io(|conn: &mut LimitedConn| {
        let _ = conn.stream.set_nodelay(true);
    });
    axum::serve(
        listener,
        router(directory).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .with_context(|| format!("metadata service on {local}"))
}

/// The axum Router (for tests), using `axum::extract::ConnectInfo<SocketAddr>` for the peer.
pub fn router(directory: Arc<dyn InstanceDirectory>) -> Router {
    let mut r: Router<Directory> = Router::new()
        .route("/", get(ec2_versions))
        .route("/openstack", get(openstack_versions))
        .route("/openstack/", get(openstack_versions));
    for v in OPENSTACK_VERSIONS {
        let base = format!("/openstack/{v}");
        r = r
            .route(&base, get(openstack_index))
            .route(&format!("{base}/"), get(openstack_index))
            .route(&format!("{base}/meta_data.json"), get(openstack_meta_data))
            .route(
                &format!("{base}/network_data.json"),
                get(openstack_network_data),
            )
            .route(&format!("{base}/user_data"), get(user_data))
            .route(&format!("{base}/vendor_data.json"), get(vendor_data));
    }
    for v in EC2_VERSIONS {
        let base = format!("/{v}");
        let md = format!("{base}/meta-data");
        r = r
            .route(&base, get(ec2_index))
            .route(&format!("{base}/"), get(ec2_index))
            .route(&format!("{base}/user-data"), get(user_data))
            .route(&md, get(ec2_meta_data))
            .route(&format!("{md}/"), get(ec2_meta_data))
            .route(&format!("{md}/instance-id"), get(ec2_instance_id))
            .route(&format!("{md}/hostname"), get(ec2_hostname))
            .route(&format!("{md}/local-hostname"), get(ec2_hostname))
            .route(&format!("{md}/local-ipv4"), get(ec2_local_ipv4))
            .route(&format!("{md}/public-keys"), get(ec2_public_keys))
            .route(&format!("{md}/public-keys/"), get(ec2_public_keys))
            .route(&format!("{md}/public-keys/{{index}}"), get(ec2_public_key))
            .route(&format!("{md}/public-keys/{{index}}/"), get(ec2_public_key))
            .route(
                &format!("{md}/public-keys/{{index}}/openssh-key"),
                get(ec2_openssh_key),
            );
    }
    r.fallback(not_found).with_state(directory)
}

// ---------------------------------------------------------------- the caller

/// The instance asking, found by the connection's peer address only.
struct Caller {
    spec: InstanceSpec,
    /// Index of the NIC with the peer's address.
    nic: usize,
}

impl Caller {
    fn nic(&self) -> &NicSpec {
        &self.spec.nics[self.nic]
    }

    /// `<hostname>.<domain>`: the instance's DNS name on the asking NIC's network.
    fn fqdn(&self) -> String {
        format!("{}.{}", self.spec.guest.hostname, self.nic().network.domain)
    }
}

impl FromRequestParts<Directory> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        directory: &Directory,
    ) -> Result<Self, Response> {
        // The peer address the listener saw, and nothing from the request.
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied()
        else {
            tracing::error!("metadata request without a peer address; refused");
            return Err(unknown_peer());
        };
        let IpAddr::V4(ip) = peer.ip() else {
            tracing::warn!(peer = %peer.ip(), "metadata request over IPv6; refused");
            return Err(unknown_peer());
        };
        let Some(spec) = directory.by_address(ip) else {
            tracing::warn!(
                peer = %ip,
                path = %parts.uri.path(),
                "metadata request from an address no local instance has; refused"
            );
            return Err(unknown_peer());
        };
        let Some(nic) = spec.nics.iter().position(|n| n.ip == ip) else {
            tracing::error!(
                peer = %ip,
                instance = %spec.id,
                "instance directory gave an instance without the peer's address; refused"
            );
            return Err(unknown_peer());
        };
        tracing::debug!(peer = %ip, instance = %spec.id, path = %parts.uri.path(), "metadata request");
        Ok(Caller { spec, nic })
    }
}

fn unknown_peer() -> Response {
    (StatusCode::NOT_FOUND, UNKNOWN_PEER).into_response()
}

fn not_found_text(what: &'static str) -> Response {
    (StatusCode::NOT_FOUND, what).into_response()
}

async fn not_found() -> Response {
    not_found_text("not found\n")
}

/// A listing: one entry a line, no trailing newline (as Nova and EC2).
fn listing<S: AsRef<str>>(entries: &[S]) -> String {
    entries
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_user_data(spec: &InstanceSpec) -> bool {
    guest_data::user_data(spec).is_some()
}

// ---------------------------------------------------------------- OpenStack

async fn openstack_versions(_: Caller) -> String {
    listing(&OPENSTACK_VERSIONS)
}

async fn openstack_index(c: Caller) -> String {
    let mut entries = vec!["meta_data.json", "network_data.json"];
    if has_user_data(&c.spec) {
        entries.push("user_data");
    }
    entries.push("vendor_data.json");
    listing(&entries)
}

async fn openstack_meta_data(c: Caller) -> Json<Value> {
    Json(guest_data::meta_data(&c.spec))
}

async fn openstack_network_data(c: Caller) -> Json<Value> {
    Json(guest_data::network_data(&c.spec))
}

async fn vendor_data(_: Caller) -> Json<Value> {
    Json(json!({}))
}

/// OpenStack's `user_data` and EC2's `user-data`: the raw bytes.
async fn user_data(c: Caller) -> Response {
    match guest_data::user_data(&c.spec) {
        Some(bytes) => bytes.into_response(),
        None => not_found_text("no user data\n"),
    }
}

// ---------------------------------------------------------------- EC2

async fn ec2_versions(_: Caller) -> String {
    listing(&EC2_VERSIONS)
}

async fn ec2_index(c: Caller) -> String {
    let mut entries = vec!["meta-data/"];
    if has_user_data(&c.spec) {
        entries.push("user-data");
    }
    listing(&entries)
}

async fn ec2_meta_data(c: Caller) -> String {
    let mut entries = vec!["hostname", "instance-id", "local-hostname", "local-ipv4"];
    if !c.spec.guest.keys.is_empty() {
        entries.push("public-keys/");
    }
    listing(&entries)
}

async fn ec2_instance_id(c: Caller) -> String {
    c.spec.id.to_string()
}

async fn ec2_hostname(c: Caller) -> String {
    c.fqdn()
}

async fn ec2_local_ipv4(c: Caller) -> String {
    c.nic().ip.to_string()
}

async fn ec2_public_keys(c: Caller) -> Response {
    if c.spec.guest.keys.is_empty() {
        return not_found_text("no public keys\n");
    }
    let entries: Vec<String> = c
        .spec
        .guest
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{i}={}", k.name))
        .collect();
    listing(&entries).into_response()
}

/// The key at `index`: a canonical decimal number (no sign, no leading zero).
fn key_at<'a>(c: &'a Caller, index: &str) -> Option<&'a str> {
    let i: usize = index.parse().ok()?;
    if i.to_string() != index {
        return None;
    }
    c.spec.guest.keys.get(i).map(|k| k.public_key.as_str())
}

async fn ec2_public_key(c: Caller, Path(index): Path<String>) -> Response {
    match key_at(&c, &index) {
        Some(_) => "openssh-key".into_response(),
        None => not_found_text("no such key\n"),
    }
}

async fn ec2_openssh_key(c: Caller, Path(index): Path<String>) -> Response {
    match key_at(&c, &index) {
        Some(key) => key.to_owned().into_response(),
        None => not_found_text("no such key\n"),
    }
}

// ---------------------------------------------------------------- connection limits

#[derive(Default)]
struct Counts {
    per_peer: HashMap<IpAddr, usize>,
    total: usize,
}

/// One open connection's place in the counts, given back on drop.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                counts.per_peer.remove(&self.peer);
            }
        }
    }
}

/// A TCP listener that closes connections beyond the limits at once.
struct LimitedListener {
    inner: TcpListener,
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
}

impl LimitedListener {
    fn slot(&self, peer: IpAddr) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.per_peer.get(&peer).copied().unwrap_or(0);
        if n >= self.limits.per_peer || counts.total >= self.limits.total {
            return None;
        }
        counts.per_peer.insert(peer, n + 1);
        counts.total += 1;
        Some(Slot {
            counts: self.counts.clone(),
            peer,
        })
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedConn, SocketAddr) {
        loop {
            // Retries (and logs) accept errors itself.
            let (stream, peer) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.slot(peer.ip()) {
                Some(slot) => return (LimitedConn::new(stream, slot, self.limits), peer),
                None => {
                    tracing::debug!(peer = %peer.ip(), "metadata service: too many connections; closing");
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails with `TimedOut` once idle or too old.
struct LimitedConn {
    stream: TcpStream,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl LimitedConn {
    fn new(stream: TcpStream, slot: Slot, limits: Limits) -> Self {
        let now = Instant::now();
        Self {
            stream,
            idle_timeout: limits.idle,
            idle: Box::pin(tokio::time::sleep_until(now + limits.idle)),
            deadline: Box::pin(tokio::time::sleep_until(now + limits.lifetime)),
            _slot: slot,
        }
    }

    fn progressed(&mut self) {
        let at = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(at);
    }

    fn timed_out() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "metadata connection timed out")
    }

    /// Runs `op` on the stream unless a timeout has passed; while `op` is
    /// pending, the timeouts wake the task.
    fn poll_io<T>(
        &mut self,
        cx: &mut TaskContext<'_>,
        op: impl FnOnce(Pin<&mut TcpStream>, &mut TaskContext<'_>) -> Poll<io::Result<T>>,
        made_progress: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        if self.deadline.is_elapsed() {
            return Poll::Ready(Err(Self::timed_out()));
        }
        match op(Pin::new(&mut self.stream), cx) {
            Poll::Ready(Ok(v)) => {
                if made_progress(&v) {
                    self.progressed();
                }
                Poll::Ready(Ok(v))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let idle = self.idle.as_mut().poll(cx).is_ready();
                let old = self.deadline.as_mut().poll(cx).is_ready();
                if idle || old {
                    Poll::Ready(Err(Self::timed_out()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = self.get_mut();
        let r = this.poll_io(cx, |s, cx| s.poll_read(cx, &mut *buf), |_| false);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.progressed();
        }
        r
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io(cx, |s, cx| s.poll_write(cx, buf), |n| *n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io(cx, |s, cx| s.poll_write_vectored(cx, bufs), |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_io(cx, |s, cx| s.poll_flush(cx), |_| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
