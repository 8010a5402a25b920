//! A real controller (SQLite in a temporary directory, or a database named
//! by URL) with simulated hosts joined to it,
//! and a small client of its `/v1` API. Shared by `crates/sim/tests` and
//! the `placement_scale` and `openstack_overhead` benchmarks (which include
//! this file by path).
//!
//! The controller runs in this process ([`Testbed::start`]) or in a child
//! process of the same executable ([`Testbed::start_child`], which calls
//! [`serve_if_child`] first thing in `main`). A fleet of 10,000 simulated
//! hosts holds one connection per host on each side: in one process that
//! is over 20,000 descriptors, more than a shell without
//! `CAP_SYS_RESOURCE` may open; in two, each side needs half.

#![allow(dead_code)]

use nubis_controller::accounts::{AccountSettings, Registration};
use nubis_controller::server::{start, ControllerConfig};
use nubis_pki::ca::ClusterCa;
use nubis_sim::{Fleet, SimHostSpec};
use nubis_supervise::{Policy, Supervisor};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const PASSWORD: &str = "correct horse battery staple";

/// A controller serving on free ports of 127.0.0.1.
pub struct Testbed {
    /// The `/v1` API.
    pub base: String,
    /// The agent protocol (mutual TLS).
    pub cluster_url: String,
    pub store: nubis_controller::store::Store,
    /// The cluster CA the controller made in its data directory (join
    /// tokens carry its fingerprint).
    ca: Arc<ClusterCa>,
    pub http: reqwest::Client,
    _controller: Controller,
    _dir: tempfile::TempDir,
}

/// Where the controller runs; dropping it stops it.
enum Controller {
    InProcess(#[allow(dead_code)] Supervisor),
    Child(ChildController),
}

/// A controller in a child process, killed when dropped.
struct ChildController(std::process::Child);

impl Drop for ChildController {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Set in a child started by [`Testbed::start_child`]: its data directory
/// and database URL.
const CHILD_DIR: &str = "NUBIS_TESTBED_CONTROLLER_DIR";
const CHILD_DATABASE: &str = "NUBIS_TESTBED_CONTROLLER_DATABASE";

/// In a child started by [`Testbed::start_child`]: runs the controller,
/// prints its two URLs on one line, and exits when the parent closes
/// stdin (or dies). Elsewhere returns at once.
pub fn serve_if_child() {
    let (Ok(dir), Ok(database_url)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_DATABASE))
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let running = start(config(std::path::Path::new(&dir), database_url))
            .await
            .expect("controller starts");
        let cluster_url = format!("https://{}", running.cluster_addr);
        let (addr, _supervisor) = running.supervise(Policy::default());
        println!("http://{addr} {cluster_url}");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        let mut sink = String::new();
        let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut sink)).await;
    });
    std::process::exit(0);
}

fn config(dir: &std::path::Path, database_url: String) -> ControllerConfig {
    ControllerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url,
        data_dir: dir.to_owned(),
        token_ttl: Duration::from_secs(3600),
        max_image_bytes: 64 << 20,
        dns_zone: "nubis.internal".into(),
        rental: Default::default(),
        clock: Default::default(),
        console: Default::default(),
        timeouts: Default::default(),
        readiness: Default::default(),
        accounts: AccountSettings {
            registration: Registration::Open,
            ..Default::default()
        },
        audit: Default::default(),
        tenant_pools: Default::default(),
        cluster_listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        placement: Default::default(),
        auto_evacuate: None,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nubis-sim-")
        .tempdir()
        .expect("temp dir")
}

fn sqlite_in(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("nubis.db").display())
}

/// One answer of the API.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Testbed {
    /// Starts a controller in this process on `database_url`, or on SQLite
    /// in its own temporary directory when `None`.
    pub async fn start(database_url: Option<String>) -> Self {
        let dir = temp_dir();
        let database_url = database_url.unwrap_or_else(|| sqlite_in(&dir));
        let running = start(config(dir.path(), database_url))
            .await
            .expect("controller starts");
        let cluster_url = format!("https://{}", running.cluster_addr);
        let store = running.store.clone();
        let ca = ClusterCa::load(dir.path()).expect("the cluster CA");
        let (addr, supervisor) = running.supervise(Policy::default());
        Self {
            base: format!("http://{addr}"),
            cluster_url,
            store,
            ca: Arc::new(ca),
            http: client(),
            _controller: Controller::InProcess(supervisor),
            _dir: dir,
        }
    }

    /// Starts a controller in a child process (this executable again, whose
    /// `main` calls [`serve_if_child`] first); this process reaches its
    /// store and CA directly, as `nubis admin` commands do.
    pub async fn start_child(database_url: Option<String>) -> Self {
        use std::io::BufRead;
        let dir = temp_dir();
        let database_url = database_url.unwrap_or_else(|| sqlite_in(&dir));
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(CHILD_DIR, dir.path())
            .env(CHILD_DATABASE, &database_url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the controller process");
        let stdout = child.stdout.take().unwrap();
        let child = ChildController(child);
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await
        .unwrap()
        .expect("the controller process prints its URLs");
        let mut urls = line.split_whitespace();
        let (Some(base), Some(cluster_url)) = (urls.next(), urls.next()) else {
            panic!("the controller process did not start: {line:?}");
        };
        let store = nubis_controller::store::Store::connect(&database_url)
            .await
            .expect("the controller's store");
        let ca = ClusterCa::load(dir.path()).expect("the cluster CA");
        Self {
            base: base.to_owned(),
            cluster_url: cluster_url.to_owned(),
            store,
            ca: Arc::new(ca),
            http: client(),
            _controller: Controller::Child(child),
            _dir: dir,
        }
    }

    /// `n` single-use join tokens, as `nubis admin join-token` makes them.
    pub async fn join_tokens(&self, n: usize) -> Vec<String> {
        let mut tokens = Vec::with_capacity(n);
        for _ in 0..n {
            let token = nubis_controller::cluster::issue_join_token(
                &self.ca,
                &self.store,
                Duration::from_secs(3600),
                chrono::Utc::now(),
            )
            .await
            .expect("join token");
            tokens.push(token.to_string());
        }
        tokens
    }

    /// Joins `n` simulated hosts named `<prefix>-00000`... of the given
    /// size, at most `concurrency` joins at a time.
    pub async fn join_fleet(
        &self,
        prefix: &str,
        n: usize,
        size: (u64, u64, u64),
        concurrency: usize,
    ) -> anyhow::Result<Fleet> {
        let tokens = self.join_tokens(n).await;
        let joins = tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                let spec = SimHostSpec {
                    name: format!("{prefix}-{i:05}"),
                    vcpus: size.0,
                    memory_mib: size.1,
                    disk_gib: size.2,
                };
                (token, spec)
            })
            .collect();
        Fleet::join(&self.cluster_url, joins, concurrency).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the controller answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn login(&self, name: &str) -> String {
        let a = self
            .call(
                Method::POST,
                "/v1/tokens",
                None,
                Some(json!({"name": name, "password": PASSWORD})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["token"].as_str().unwrap().to_owned()
    }

    /// An admin, made as `nubis admin create-user --admin` makes one; its token.
    pub async fn admin(&self, name: &str) -> String {
        let hash = nubis_controller::auth::hash_password(PASSWORD).unwrap();
        self.store.create_user(name, &hash, true).await.unwrap();
        self.login(name).await
    }

    /// A registered user: (token, project id).
    pub async fn user(&self, name: &str) -> (String, String) {
        let a = self
            .call(
                Method::POST,
                "/v1/users",
                None,
                Some(json!({"name": name, "password": PASSWORD})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let project = a.body["project"].as_str().unwrap().to_owned();
        (self.login(name).await, project)
    }

    /// Lets `project` hold `servers` servers of up to 1 vCPU, 512 MiB, 1 GiB.
    pub async fn allow_servers(&self, admin: &str, project: &str, servers: u64) {
        let body = json!({
            "servers": servers, "vcpus": servers, "memory_mib": servers * 512,
            "disk_gib": servers
        });
        let a = self
            .call(
                Method::PUT,
                &format!("/v1/projects/{project}/quotas"),
                Some(admin),
                Some(body),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }

    /// An active 1 MiB raw image named `name` (nothing boots it).
    pub async fn image(&self, token: &str, name: &str) {
        let a = self
            .call(
                Method::POST,
                "/v1/images",
                Some(token),
                Some(json!({"name": name, "os": "debian", "version": "12", "format": "raw"})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let id = a.body["id"].as_str().unwrap();
        let resp = self
            .http
            .put(format!("{}/v1/images/{id}/file", self.base))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(vec![0u8; 1 << 20])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    /// The body of a create of a 1 vCPU, 512 MiB, 1 GiB server.
    pub fn server_body(name: &str, image: &str, network: Option<&str>) -> Value {
        let mut body =
            json!({"name": name, "image": image, "vcpus": 1, "memory_mib": 512, "disk_gib": 1});
        if let Some(n) = network {
            body["networks"] = json!([{"network": n}]);
        }
        body
    }

    /// Every server `token` may list (`all_projects` for an admin), read
    /// page by page through `X-Next-Marker`.
    pub async fn all_servers(&self, token: &str, all_projects: bool) -> Vec<Value> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut path = format!("/v1/servers?all_projects={all_projects}");
            if let Some(m) = &marker {
                path.push_str(&format!("&marker={m}"));
            }
            let a = self.call(Method::GET, &path, Some(token), None).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            out.extend(a.body.as_array().unwrap().iter().cloned());
            match a.headers.get("x-next-marker") {
                Some(m) => marker = Some(m.to_str().unwrap().to_owned()),
                None => return out,
            }
        }
    }
}

/// Hosts whose servers take more than they have: vCPUs over 4x, memory or
/// disk over 1x (Nova's default allocation ratios), counted from `servers`
/// (API views with `host`, `vcpus`, `memory_mib`, `disk_gib`) against each
/// host's size `(vcpus, memory_mib, disk_gib)`.
pub fn overbooked_hosts(servers: &[Value], size: (u64, u64, u64)) -> usize {
    let mut used: std::collections::HashMap<String, (u64, u64, u64)> = Default::default();
    for s in servers {
        let Some(host) = s["host"].as_str() else {
            continue;
        };
        let u = used.entry(host.to_owned()).or_default();
        u.0 += s["vcpus"].as_u64().unwrap_or(0);
        u.1 += s["memory_mib"].as_u64().unwrap_or(0);
        u.2 += s["disk_gib"].as_u64().unwrap_or(0);
    }
    used.values()
        .filter(|u| u.0 > size.0 * 4 || u.1 > size.1 || u.2 > size.2)
        .count()
}

/// A size from the environment variable `name`, else `default`.
pub fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`th percentile of `samples` (nearest rank; zero when empty).
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut s = samples.to_vec();
    s.sort();
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}
