//! Tests of the metadata service: each source gets only its own data.

use super::*;
use base64::Engine;
use nubis_api::agent::{NamedKey, NetworkSpec};
use nubis_api::networks::Cidr;
use nubis_api::{NetworkId, PortId};
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
    let mut spec = crate::fixtures::instance_spec(name);
    spec.memory_mib = 256;
    spec.nics = nics
        .iter()
        .enumerate()
        .map(|(i, (ip, domain))| NicSpec {
            port: PortId::new(),
            network: network(*ip, domain),
            mac: format!("fa:16:3e:00:00:{i:02x}"),
            ip: Ipv4Addr::from(*ip),
        })
        .collect();
    spec.guest.keys = keys
        .iter()
        .map(|(name, key)| NamedKey {
            name: (*name).into(),
            public_key: (*key).into(),
        })
        .collect();
    spec.guest.user_data = user_data.map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    spec
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
