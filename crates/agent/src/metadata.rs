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
mod tests {
    use super::*;
    use base64::Engine;
    use nubis_api::agent::{GuestConfig, ImageRef, NamedKey, NetworkSpec, PowerState};
    use nubis_api::images::ImageFormat;
    use nubis_api::networks::Cidr;
    use nubis_api::{ImageId, NetworkId, PortId, ProjectId, ServerId};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    const A_USER_DATA: &[u8] = b"#!/bin/sh\necho alpha-secret\n";

    fn network(addr: [u8; 4], domain: &str) -> NetworkSpec {
        let [a, b, c, _] = addr;
        NetworkSpec {
            id: NetworkId::new(),
            cidr: Cidr::new(Ipv4Addr::new(a, b, c, 0), 24).unwrap(),
            gateway: Ipv4Addr::new(a, b, c, 1),
            domain: domain.into(),
        }
    }

    fn spec(
        name: &str,
        nics: &[([u8; 4], &str)],
        keys: &[(&str, &str)],
        user_data: Option<&[u8]>,
    ) -> InstanceSpec {
        InstanceSpec {
            id: ServerId::new(),
            name: name.into(),
            vcpus: 1,
            memory_mib: 256,
            disk_gib: 1,
            disk_image: ImageRef {
                id: ImageId::new(),
                format: ImageFormat::Qcow2,
                checksum: "0".repeat(64),
                size: 1 << 20,
            },
            kernel: None,
            initrd: None,
            cmdline: None,
            power: PowerState::Running,
            reboot_generation: 0,
            nics: nics
                .iter()
                .enumerate()
                .map(|(i, (ip, domain))| NicSpec {
                    port: PortId::new(),
                    network: network(*ip, domain),
                    mac: format!("fa:16:3e:00:00:{i:02x}"),
                    ip: Ipv4Addr::from(*ip),
                })
                .collect(),
            guest: GuestConfig {
                hostname: name.into(),
                project: ProjectId::new(),
                keys: keys
                    .iter()
                    .map(|(name, key)| NamedKey {
                        name: (*name).into(),
                        public_key: (*key).into(),
                    })
                    .collect(),
                user_data: user_data.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                config_drive: false,
                config_format: Default::default(),
            },
            security_groups: Vec::new(),
        }
    }

    /// Instance A: 127.0.0.2 (and 127.0.1.5 on a second network), a key and
    /// user data. Instance B: 127.0.0.3, neither.
    fn fixtures() -> (InstanceSpec, InstanceSpec) {
        let a = spec(
            "alpha",
            &[([127, 0, 0, 2], "p1.nubis"), ([127, 0, 1, 5], "p1.other")],
            &[("alpha-key", "ssh-ed25519 AAAAalpha alpha@example")],
            Some(A_USER_DATA),
        );
        let b = spec("bravo", &[([127, 0, 0, 3], "p2.nubis")], &[], None);
        (a, b)
    }

    /// Maps each NIC address of its instances to the instance.
    struct FakeDirectory(HashMap<Ipv4Addr, InstanceSpec>);

    impl FakeDirectory {
        fn of(specs: &[&InstanceSpec]) -> Arc<Self> {
            let mut map = HashMap::new();
            for s in specs {
                for nic in &s.nics {
                    map.insert(nic.ip, (*s).clone());
                }
            }
            Arc::new(Self(map))
        }
    }

    impl InstanceDirectory for FakeDirectory {
        fn by_address(&self, ip: Ipv4Addr) -> Option<InstanceSpec> {
            self.0.get(&ip).cloned()
        }
    }

    /// Claims every address belongs to one instance: only the service's own
    /// checks stand between a wrong peer and that instance's data.
    struct Promiscuous(InstanceSpec);

    impl InstanceDirectory for Promiscuous {
        fn by_address(&self, _: Ipv4Addr) -> Option<InstanceSpec> {
            Some(self.0.clone())
        }
    }

    async fn start(directory: Arc<dyn InstanceDirectory>) -> SocketAddr {
        start_with(directory, LIMITS).await
    }

    async fn start_with(directory: Arc<dyn InstanceDirectory>, limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with_limits(listener, directory, limits));
        addr
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    }

    impl Reply {
        fn text(&self) -> String {
            String::from_utf8(self.body.clone()).unwrap()
        }

        fn json(&self) -> Value {
            assert_eq!(self.status, 200, "{self:?}");
            assert_eq!(self.content_type, "application/json", "{self:?}");
            serde_json::from_slice(&self.body).unwrap()
        }

        /// A 200 `text/plain` body.
        fn ok_text(&self) -> String {
            assert_eq!(self.status, 200, "{self:?}");
            assert!(self.content_type.starts_with("text/plain"), "{self:?}");
            self.text()
        }
    }

    /// Connects to `server` from `from` (any port).
    async fn connect(from: Ipv4Addr, server: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
        socket.connect(server).await.unwrap()
    }

    fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut content_type = String::new();
        for line in lines {
            let (name, value) = line.split_once(':').unwrap();
            let name = name.to_ascii_lowercase();
            assert_ne!(
                name, "transfer-encoding",
                "chunked replies are not parsed here"
            );
            if name == "content-type" {
                content_type = value.trim().to_owned();
            }
        }
        Reply {
            status,
            content_type,
            body: raw[split + 4..].to_vec(),
        }
    }

    /// Sends a raw request (`target` as the request target, then `headers`)
    /// from `from` and reads the reply to the end.
    async fn request(
        from: Ipv4Addr,
        server: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut stream = connect(from, server).await;
        let mut req = format!("{method} {target} HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            req.push_str("Host: 169.254.169.254\r\n");
        }
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .expect("reply in time")
            .unwrap();
        parse(&raw)
    }

    async fn get(from: [u8; 4], server: SocketAddr, path: &str) -> Reply {
        request(Ipv4Addr::from(from), server, "GET", path, &[]).await
    }

    const A: [u8; 4] = [127, 0, 0, 2];
    const A2: [u8; 4] = [127, 0, 1, 5];
    const B: [u8; 4] = [127, 0, 0, 3];
    const UNKNOWN: [u8; 4] = [127, 0, 0, 4];

    #[tokio::test]
    async fn metadata_each_instance_gets_only_its_own_data() {
        let (a, b) = fixtures();
        let server = start(FakeDirectory::of(&[&a, &b])).await;

        let md = get(A, server, "/openstack/latest/meta_data.json")
            .await
            .json();
        assert_eq!(md, guest_data::meta_data(&a));
        assert_eq!(md["uuid"], a.id.to_string());
        assert_eq!(md["name"], "alpha");
        assert_eq!(
            md["public_keys"]["alpha-key"],
            "ssh-ed25519 AAAAalpha alpha@example"
        );
        let md = get(B, server, "/openstack/latest/meta_data.json")
            .await
            .json();
        assert_eq!(md, guest_data::meta_data(&b));
        assert_eq!(md["uuid"], b.id.to_string());
        assert!(!md.to_string().contains("alpha"));

        let nd = get(A, server, "/openstack/latest/network_data.json")
            .await
            .json();
        assert_eq!(nd, guest_data::network_data(&a));
        let nd = get(B, server, "/openstack/latest/network_data.json")
            .await
            .json();
        assert_eq!(nd, guest_data::network_data(&b));
        assert!(!nd.to_string().contains("127.0.0.2"));

        let ud = get(A, server, "/openstack/latest/user_data").await;
        assert_eq!((ud.status, ud.body.as_slice()), (200, A_USER_DATA));
        assert_eq!(ud.content_type, "application/octet-stream");
        let ud = get(B, server, "/openstack/latest/user_data").await;
        assert_eq!(ud.status, 404);
        assert!(!ud.text().contains("alpha"));

        let id = get(A, server, "/latest/meta-data/instance-id")
            .await
            .ok_text();
        assert_eq!(id, a.id.to_string());
        let id = get(B, server, "/latest/meta-data/instance-id")
            .await
            .ok_text();
        assert_eq!(id, b.id.to_string());
        // A's second NIC is A too.
        let id = get(A2, server, "/latest/meta-data/instance-id")
            .await
            .ok_text();
        assert_eq!(id, a.id.to_string());
    }

    #[tokio::test]
    async fn metadata_openstack_paths() {
        let (a, b) = fixtures();
        let server = start(FakeDirectory::of(&[&a, &b])).await;

        for path in ["/openstack", "/openstack/"] {
            assert_eq!(get(A, server, path).await.ok_text(), "2012-08-10\nlatest");
        }
        for v in OPENSTACK_VERSIONS {
            let base = format!("/openstack/{v}");
            for index in [base.clone(), format!("{base}/")] {
                assert_eq!(
                    get(A, server, &index).await.ok_text(),
                    "meta_data.json\nnetwork_data.json\nuser_data\nvendor_data.json"
                );
                assert_eq!(
                    get(B, server, &index).await.ok_text(),
                    "meta_data.json\nnetwork_data.json\nvendor_data.json"
                );
            }
            let md = get(A, server, &format!("{base}/meta_data.json"))
                .await
                .json();
            assert_eq!(md["uuid"], a.id.to_string());
            let nd = get(A, server, &format!("{base}/network_data.json"))
                .await
                .json();
            assert_eq!(nd["networks"][0]["ip_address"], "127.0.0.2");
            assert_eq!(nd["networks"][1]["ip_address"], "127.0.1.5");
            let vd = get(A, server, &format!("{base}/vendor_data.json"))
                .await
                .json();
            assert_eq!(vd, json!({}));
            let ud = get(A, server, &format!("{base}/user_data")).await;
            assert_eq!((ud.status, ud.body.as_slice()), (200, A_USER_DATA));
            assert_eq!(
                get(B, server, &format!("{base}/user_data")).await.status,
                404
            );
        }
        for path in [
            "/openstack/2013-04-04/meta_data.json",
            "/openstack/latest/password",
            "/openstack/latest/meta_data.json/",
            "/openstack/latest/../latest/user_data",
        ] {
            assert_eq!(get(A, server, path).await.status, 404, "{path}");
        }
    }

    #[tokio::test]
    async fn metadata_ec2_paths() {
        let (a, b) = fixtures();
        let server = start(FakeDirectory::of(&[&a, &b])).await;

        assert_eq!(get(A, server, "/").await.ok_text(), "2009-04-04\nlatest");
        for v in EC2_VERSIONS {
            let md = format!("/{v}/meta-data");
            for index in [format!("/{v}"), format!("/{v}/")] {
                assert_eq!(
                    get(A, server, &index).await.ok_text(),
                    "meta-data/\nuser-data"
                );
                assert_eq!(get(B, server, &index).await.ok_text(), "meta-data/");
            }
            for listing in [md.clone(), format!("{md}/")] {
                assert_eq!(
                    get(A, server, &listing).await.ok_text(),
                    "hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\npublic-keys/"
                );
                assert_eq!(
                    get(B, server, &listing).await.ok_text(),
                    "hostname\ninstance-id\nlocal-hostname\nlocal-ipv4"
                );
            }
            let id = get(A, server, &format!("{md}/instance-id")).await.ok_text();
            assert_eq!(id, a.id.to_string());
            for name in ["hostname", "local-hostname"] {
                let path = format!("{md}/{name}");
                assert_eq!(get(A, server, &path).await.ok_text(), "alpha.p1.nubis");
                // The asking NIC's network names it.
                assert_eq!(get(A2, server, &path).await.ok_text(), "alpha.p1.other");
                assert_eq!(get(B, server, &path).await.ok_text(), "bravo.p2.nubis");
            }
            let ip = format!("{md}/local-ipv4");
            assert_eq!(get(A, server, &ip).await.ok_text(), "127.0.0.2");
            assert_eq!(get(A2, server, &ip).await.ok_text(), "127.0.1.5");
            assert_eq!(get(B, server, &ip).await.ok_text(), "127.0.0.3");

            for keys in [format!("{md}/public-keys"), format!("{md}/public-keys/")] {
                assert_eq!(get(A, server, &keys).await.ok_text(), "0=alpha-key");
                assert_eq!(get(B, server, &keys).await.status, 404);
            }
            for key in [
                format!("{md}/public-keys/0"),
                format!("{md}/public-keys/0/"),
            ] {
                assert_eq!(get(A, server, &key).await.ok_text(), "openssh-key");
                assert_eq!(get(B, server, &key).await.status, 404);
            }
            let openssh = format!("{md}/public-keys/0/openssh-key");
            assert_eq!(
                get(A, server, &openssh).await.ok_text(),
                "ssh-ed25519 AAAAalpha alpha@example"
            );
            assert_eq!(get(B, server, &openssh).await.status, 404);
            for bad in ["1", "00", "+0", "-0", "x"] {
                let path = format!("{md}/public-keys/{bad}/openssh-key");
                assert_eq!(get(A, server, &path).await.status, 404, "{path}");
            }

            let ud = get(A, server, &format!("/{v}/user-data")).await;
            assert_eq!((ud.status, ud.body.as_slice()), (200, A_USER_DATA));
            assert_eq!(ud.content_type, "application/octet-stream");
            assert_eq!(get(B, server, &format!("/{v}/user-data")).await.status, 404);
        }
        for path in [
            "/2016-09-02/meta-data/instance-id",
            "/latest/meta-data/ami-id",
            "/latest/api/token",
        ] {
            assert_eq!(get(A, server, path).await.status, 404, "{path}");
        }
    }

    #[tokio::test]
    async fn metadata_unknown_address_gets_404() {
        let (a, b) = fixtures();
        let server = start(FakeDirectory::of(&[&a, &b])).await;
        for path in [
            "/",
            "/openstack",
            "/openstack/latest/meta_data.json",
            "/openstack/latest/user_data",
            "/latest/meta-data/",
            "/latest/meta-data/instance-id",
            "/latest/user-data",
        ] {
            let r = get(UNKNOWN, server, path).await;
            assert_eq!(r.status, 404, "{path}");
            assert!(r.content_type.starts_with("text/plain"), "{r:?}");
            assert_eq!(r.text(), UNKNOWN_PEER);
        }
        // Naming a known instance's address in headers changes nothing.
        let r = request(
            Ipv4Addr::from(UNKNOWN),
            server,
            "GET",
            "/openstack/latest/meta_data.json",
            &[
                ("X-Forwarded-For", "127.0.0.2"),
                ("X-Real-IP", "127.0.0.2"),
                ("Forwarded", "for=127.0.0.2"),
                ("Host", "127.0.0.2"),
            ],
        )
        .await;
        assert_eq!((r.status, r.text().as_str()), (404, UNKNOWN_PEER));
    }

    #[tokio::test]
    async fn metadata_spoofed_headers_are_ignored() {
        let (a, b) = fixtures();
        let server = start(FakeDirectory::of(&[&a, &b])).await;
        let b_id = b.id.to_string();
        let spoofs: &[&[(&str, &str)]] = &[
            &[("X-Forwarded-For", "127.0.0.3")],
            &[("X-Forwarded-For", "127.0.0.3, 127.0.0.3")],
            &[("X-Real-IP", "127.0.0.3")],
            &[("Forwarded", "for=127.0.0.3")],
            &[("Client-IP", "127.0.0.3"), ("True-Client-IP", "127.0.0.3")],
            &[
                ("X-Instance-ID", b_id.as_str()),
                ("X-Instance-ID-Signature", "x"),
            ],
            &[("Host", "127.0.0.3")],
            &[("Host", "127.0.0.3:80"), ("X-Forwarded-For", "127.0.0.3")],
        ];
        for headers in spoofs {
            let r = request(
                Ipv4Addr::from(A),
                server,
                "GET",
                "/openstack/latest/meta_data.json",
                headers,
            )
            .await;
            assert_eq!(r.json()["uuid"], a.id.to_string(), "{headers:?}");
            let r = request(
                Ipv4Addr::from(A),
                server,
                "GET",
                "/latest/meta-data/local-ipv4",
                headers,
            )
            .await;
            assert_eq!(r.ok_text(), "127.0.0.2", "{headers:?}");
        }
        // An absolute-form request target naming B's address.
        let r = request(
            Ipv4Addr::from(A),
            server,
            "GET",
            "http://127.0.0.3/openstack/latest/meta_data.json",
            &[("Host", "127.0.0.3")],
        )
        .await;
        assert_eq!(r.json()["uuid"], a.id.to_string());
        // And B, spoofing A, still gets B.
        let r = request(
            Ipv4Addr::from(B),
            server,
            "GET",
            "/openstack/latest/user_data",
            &[("X-Forwarded-For", "127.0.0.2")],
        )
        .await;
        assert_eq!(r.status, 404);
        assert!(!r.text().contains("alpha"));
    }

    #[tokio::test]
    async fn metadata_only_get_and_head() {
        let (a, b) = fixtures();
        let server = start(FakeDirectory::of(&[&a, &b])).await;
        let from = Ipv4Addr::from(A);
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            for path in [
                "/openstack/latest/meta_data.json",
                "/latest/meta-data/instance-id",
            ] {
                let r = request(from, server, method, path, &[("Content-Length", "0")]).await;
                assert_eq!(r.status, 405, "{method} {path}");
            }
        }
        let r = request(
            from,
            server,
            "HEAD",
            "/openstack/latest/meta_data.json",
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(get(A, server, "/nope").await.status, 404);
    }

    #[tokio::test]
    async fn metadata_fails_closed() {
        let (a, _) = fixtures();
        let promiscuous: Arc<dyn InstanceDirectory> = Arc::new(Promiscuous(a.clone()));

        // The directory names an instance without the peer's address.
        let server = start(promiscuous.clone()).await;
        let r = get(B, server, "/openstack/latest/meta_data.json").await;
        assert_eq!((r.status, r.text().as_str()), (404, UNKNOWN_PEER));
        assert_eq!(
            get(A, server, "/latest/meta-data/local-ipv4")
                .await
                .ok_text(),
            "127.0.0.2"
        );

        // Served without connect info: no peer address, no answer.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(promiscuous.clone())).await });
        let r = get(A, addr, "/openstack/latest/meta_data.json").await;
        assert_eq!((r.status, r.text().as_str()), (404, UNKNOWN_PEER));
    }

    #[tokio::test]
    async fn metadata_ipv6_peers_get_404() {
        let (a, _) = fixtures();
        let Ok(listener) = TcpListener::bind("[::1]:0").await else {
            eprintln!("no IPv6 loopback; skipped");
            return;
        };
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(Promiscuous(a))));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let r = parse(&raw);
        assert_eq!((r.status, r.text().as_str()), (404, UNKNOWN_PEER));
    }

    /// Whether the server closes `stream` (EOF or reset) within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => panic!("unexpected data: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => false,
        }
    }

    /// Retries `get` until it answers (a freed slot is seen once the server
    /// notices the close).
    async fn eventually_status(from: [u8; 4], server: SocketAddr, path: &str) -> u16 {
        for _ in 0..100 {
            let mut stream = connect(Ipv4Addr::from(from), server).await;
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            // A refused connection may already be reset when writing.
            if stream.write_all(req.as_bytes()).await.is_ok() {
                let mut raw = Vec::new();
                if stream.read_to_end(&mut raw).await.is_ok() && !raw.is_empty() {
                    return parse(&raw).status;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no answer from {from:?}");
    }

    #[tokio::test]
    async fn metadata_connection_limits() {
        let (a, b) = fixtures();
        let limits = Limits {
            per_peer: 2,
            total: 3,
            idle: Duration::from_secs(60),
            lifetime: Duration::from_secs(60),
        };
        let server = start_with(FakeDirectory::of(&[&a, &b]), limits).await;
        let short = Duration::from_millis(500);

        // A holds its two connections; a third is closed at once.
        let mut a1 = connect(Ipv4Addr::from(A), server).await;
        let mut a2 = connect(Ipv4Addr::from(A), server).await;
        let mut a3 = connect(Ipv4Addr::from(A), server).await;
        assert!(closed_within(&mut a3, Duration::from_secs(5)).await);
        assert!(!closed_within(&mut a1, short).await);
        assert!(!closed_within(&mut a2, short).await);

        // B still gets in, up to the total.
        let mut b1 = connect(Ipv4Addr::from(B), server).await;
        assert!(!closed_within(&mut b1, short).await);
        let mut unknown = connect(Ipv4Addr::from(UNKNOWN), server).await;
        assert!(closed_within(&mut unknown, Duration::from_secs(5)).await);

        // Closing connections gives their slots back.
        drop(b1);
        assert_eq!(eventually_status(UNKNOWN, server, "/").await, 404);
        drop(a1);
        assert_eq!(eventually_status(A, server, "/").await, 200);
        drop(a2);
    }

    #[tokio::test]
    async fn metadata_idle_connections_are_closed() {
        let (a, _) = fixtures();
        let limits = Limits {
            idle: Duration::from_millis(200),
            ..LIMITS
        };
        let server = start_with(FakeDirectory::of(&[&a]), limits).await;
        let mut idle = connect(Ipv4Addr::from(A), server).await;
        assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn metadata_slow_connections_are_closed() {
        let (a, _) = fixtures();
        let limits = Limits {
            lifetime: Duration::from_millis(300),
            ..LIMITS
        };
        let server = start_with(FakeDirectory::of(&[&a]), limits).await;
        let mut slow = connect(Ipv4Addr::from(A), server).await;
        // A byte every 50 ms keeps it from idling, never finishing a request.
        let started = std::time::Instant::now();
        let mut closed = false;
        for b in b"GET /openstack/latest/meta_data.json HTTP/1.1\r\nX-Padding: "
            .iter()
            .cycle()
        {
            if started.elapsed() > Duration::from_secs(5) {
                break;
            }
            if slow.write_all(&[*b]).await.is_err()
                || closed_within(&mut slow, Duration::from_millis(50)).await
            {
                closed = true;
                break;
            }
        }
        assert!(closed, "slow connection still open after 5 s");
    }
}
