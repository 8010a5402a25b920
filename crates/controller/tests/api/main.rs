//! The REST API over real HTTP: bad input gets a 4xx with a clear JSON error
//! (`{"error":{"code":"...","message":"..."}}`) and creates nothing.
//!
//! Every test starts its own controller (SQLite in a temporary directory, a
//! free port on 127.0.0.1) and talks to it with reqwest. No agent runs: where
//! servers must be placed, a host is registered through the agent protocol,
//! which is all that validation needs.
//!
//! Each bad request is a valid request with one thing broken, so the test
//! shows that this one thing got it refused; after each, a list endpoint must
//! answer exactly what it did before. A positive control at the end of most
//! tests proves that the valid request really is accepted.

use nubis_controller::accounts::{AccountSettings, Registration};
use nubis_controller::http::health::Readiness;
use nubis_controller::http::timeouts::Timeouts;
use nubis_controller::server::{start, ControllerConfig};
use nubis_supervise::{Policy, Supervisor};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod accounts;
mod address_space;
mod agent;
mod audit;
mod drain;
mod flavors;
mod health;
mod hosts;
mod images;
mod iso;
mod isolation;
mod networks;
mod neutron;
mod openapi;
mod placement;
mod portal_headers;
mod quotas;
mod resource_limits;
mod revisions;
mod routing;
mod server_pages;
mod servers;
mod terms;
mod timeouts;
mod usage;
mod users;

const PASSWORD: &str = "correct horse battery staple";
/// Small, so the upload limit can be tested cheaply.
const MAX_IMAGE_BYTES: u64 = 8 << 20;
const MIB: usize = 1 << 20;
const GIB: u64 = 1 << 30;
/// Every list endpoint of a project. Listing networks makes the project's
/// `default` network on first use, so snapshots start by making it.
const LISTS: [&str; 5] = [
    "/v1/servers",
    "/v1/images",
    "/v1/flavors",
    "/v1/networks",
    "/v1/keypairs",
];

/// An expected error: status and code.
type Want = (StatusCode, &'static str);
const INVALID: Want = (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
const BAD: Want = (StatusCode::BAD_REQUEST, "invalid_request");
const UNAUTHORIZED: Want = (StatusCode::UNAUTHORIZED, "unauthorized");
const FORBIDDEN: Want = (StatusCode::FORBIDDEN, "forbidden");
const NOT_FOUND: Want = (StatusCode::NOT_FOUND, "not_found");
const CONFLICT: Want = (StatusCode::CONFLICT, "conflict");
const NO_CAPACITY: Want = (StatusCode::CONFLICT, "no_capacity");
const NO_HOSTS: Want = (StatusCode::SERVICE_UNAVAILABLE, "no_hosts");
const TOO_LARGE: Want = (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
const UNSUPPORTED: Want = (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
const NOT_ALLOWED: Want = (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");

// ---------------------------------------------------------------------------
// A controller and a client for it
// ---------------------------------------------------------------------------

/// A controller serving on a free port, its state in a temporary directory;
/// stopped when dropped (with its supervisor).
struct Cloud {
    base: String,
    /// The agent protocol's listener (mutual TLS).
    cluster_base: String,
    /// The agent client of the host `register_host` joined last.
    agent: std::sync::Mutex<Option<reqwest::Client>>,
    http: reqwest::Client,
    supervisor: Supervisor,
    dir: tempfile::TempDir,
    /// The store's URL (SQLite in `dir` unless the test chose PostgreSQL).
    db_url: String,
}

/// Settings of a test controller beyond the usual.
#[derive(Default)]
struct Settings {
    clock: nubis_controller::clock::Clock,
    timeouts: Timeouts,
    readiness: Readiness,
    policy: Policy,
    /// Registration, throttling; `None`: open registration, default limits.
    accounts: Option<AccountSettings>,
    audit: nubis_controller::audit::AuditSettings,
    tenant_pools: nubis_controller::address_space::TenantPools,
    /// The store's URL; `None`: SQLite in the test's directory.
    database_url: Option<String>,
    placement: nubis_controller::scheduler::PlacementSettings,
}

impl Cloud {
    async fn start() -> Self {
        Self::start_with_token_ttl(Duration::from_secs(3600)).await
    }

    async fn start_with_token_ttl(token_ttl: Duration) -> Self {
        Self::start_with(token_ttl, Default::default()).await
    }

    async fn start_with(token_ttl: Duration, clock: nubis_controller::clock::Clock) -> Self {
        Self::start_with_settings(
            token_ttl,
            Settings {
                clock,
                ..Default::default()
            },
        )
        .await
    }

    async fn start_with_settings(token_ttl: Duration, settings: Settings) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nubis-api-test-")
            .tempdir()
            .expect("temp dir");
        let db_url = settings
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("nubis.db").display()));
        let config = ControllerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: db_url.clone(),
            data_dir: dir.path().to_owned(),
            token_ttl,
            max_image_bytes: MAX_IMAGE_BYTES,
            dns_zone: "nubis.internal".into(),
            rental: Default::default(),
            clock: settings.clock,
            console: Default::default(),
            timeouts: settings.timeouts,
            readiness: settings.readiness,
            accounts: settings.accounts.unwrap_or(AccountSettings {
                registration: Registration::Open,
                ..Default::default()
            }),
            audit: settings.audit,
            tenant_pools: settings.tenant_pools,
            cluster_listen: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            placement: settings.placement,
            auto_evacuate: None,
        };
        let running = start(config).await.expect("controller starts");
        let cluster_base = format!("https://{}", running.cluster_addr);
        let (addr, supervisor) = running.supervise(settings.policy);
        Self {
            base: format!("http://{addr}"),
            cluster_base,
            agent: Default::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            supervisor,
            dir,
            db_url,
        }
    }

    fn images_dir(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    /// A request; `token` adds `Authorization: Bearer <token>`.
    fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, method: Method, path: &str, token: Option<&str>) -> Response {
        self.req(method, path, token).send().await.unwrap()
    }

    async fn get(&self, token: &str, path: &str) -> Response {
        self.send(Method::GET, path, Some(token)).await
    }

    async fn post(&self, token: Option<&str>, path: &str, body: &Value) -> Response {
        let r = self.req(Method::POST, path, token).json(body);
        r.send().await.unwrap()
    }

    /// A POST with the body sent as-is (malformed JSON, odd content types).
    async fn post_raw(
        &self,
        token: Option<&str>,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut r = self.req(Method::POST, path, token).body(body);
        if let Some(ct) = content_type {
            r = r.header(CONTENT_TYPE, ct);
        }
        r.send().await.unwrap()
    }

    /// `GET path`, which must answer 200 with JSON.
    async fn get_ok(&self, token: &str, path: &str) -> Value {
        ok_json(self.get(token, path).await, StatusCode::OK).await
    }

    /// Everything the project of `token` can list.
    async fn snapshot(&self, token: &str) -> Vec<Value> {
        let mut all = Vec::new();
        for path in LISTS {
            all.push(self.get_ok(token, path).await);
        }
        all
    }

    /// Posts each case's body to `path`; each must be refused as the case
    /// says and leave everything the caller can list as it was.
    async fn refuse_all(&self, token: &str, path: &str, cases: &[Case]) {
        let before = self.snapshot(token).await;
        for c in cases {
            let resp = self.post(Some(token), path, &c.body).await;
            assert_error(&c.what, resp, c.want, c.mention).await;
            let now = self.snapshot(token).await;
            assert_eq!(now, before, "{}: something changed", c.what);
        }
    }

    async fn register(&self, name: &str) -> Value {
        let body = json!({"name": name, "password": PASSWORD});
        ok_json(
            self.post(None, "/v1/users", &body).await,
            StatusCode::CREATED,
        )
        .await
    }

    async fn login(&self, name: &str, password: &str) -> Response {
        let body = json!({"name": name, "password": password});
        self.post(None, "/v1/tokens", &body).await
    }

    /// Logs in; returns a bearer token.
    async fn token(&self, name: &str) -> String {
        let body = ok_json(self.login(name, PASSWORD).await, StatusCode::CREATED).await;
        body["token"].as_str().expect("token").to_owned()
    }

    /// Registers `name` and logs in; returns a bearer token.
    async fn user(&self, name: &str) -> String {
        self.register(name).await;
        self.token(name).await
    }

    /// Creates the admin `name` the way `nubis admin create-user --admin`
    /// does (directly in the store: registering never makes an admin) and
    /// logs in; returns a bearer token.
    async fn admin(&self, name: &str) -> String {
        let store = nubis_controller::store::Store::connect(&self.db_url)
            .await
            .expect("the test store opens");
        let hash = nubis_controller::auth::hash_password(PASSWORD).unwrap();
        let user = store.create_user(name, &hash, true).await.unwrap();
        assert!(user.admin);
        self.token(name).await
    }

    /// Creates an image record, which must succeed.
    async fn create_image(&self, token: &str, body: Value) -> Value {
        let resp = self.post(Some(token), "/v1/images", &body).await;
        ok_json(resp, StatusCode::CREATED).await
    }

    async fn upload(&self, token: &str, id: &str, bytes: Vec<u8>) -> Response {
        self.req(Method::PUT, &format!("/v1/images/{id}/file"), Some(token))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// Creates and uploads an image; returns it (active).
    async fn active_image(&self, token: &str, name: &str, format: &str, bytes: Vec<u8>) -> Value {
        let image = self.create_image(token, image_record(name, format)).await;
        let image = ok_json(self.upload(token, id(&image), bytes).await, StatusCode::OK).await;
        assert_eq!(image["status"], "active", "{image}");
        image
    }

    /// The image as `token` sees it.
    async fn image(&self, token: &str, id: &str) -> Value {
        self.get_ok(token, &format!("/v1/images/{id}")).await
    }

    /// Registers a host the way an agent does (joining with a join token):
    /// 2 vCPUs (8 with overcommit), 4 GiB memory, 100 GiB disk. Later
    /// `agent_req` calls are this host's.
    async fn register_host(&self) -> Value {
        let (host, client) = self.join(&host_body()).await;
        *self.agent.lock().unwrap() = Some(client);
        host
    }

    /// A join token valid for an hour from `now`.
    async fn join_token_at(&self, now: chrono::DateTime<chrono::Utc>) -> nubis_pki::JoinToken {
        let ca = nubis_pki::ClusterCa::load(self.dir.path()).unwrap();
        let store = nubis_controller::store::Store::connect(&self.db_url)
            .await
            .unwrap();
        nubis_controller::cluster::issue_join_token(&ca, &store, Duration::from_secs(3600), now)
            .await
            .unwrap()
    }

    /// `POST /v1/agent/join` with `token`'s secret and a new key's CSR, over
    /// TLS that accepts only the controller of the token's CA.
    async fn try_join(&self, token: &nubis_pki::JoinToken, host: &Value) -> (Response, String) {
        let (key_pem, csr_pem) = nubis_pki::ca::new_host_key().unwrap();
        let config = nubis_pki::tls::cluster_client_config(
            nubis_pki::tls::Trust::Pinned(token.ca_fingerprint().to_owned()),
            nubis_pki::Role::Controller,
            None,
        )
        .unwrap();
        let client = nubis_pki::tls::reqwest_client(config, reqwest::Client::builder()).unwrap();
        let resp = client
            .post(format!("{}/v1/agent/join", self.cluster_base))
            .json(&json!({"secret": token.secret(), "csr_pem": csr_pem, "host": host}))
            .send()
            .await
            .unwrap();
        (resp, key_pem)
    }

    /// Joins as `host` with a fresh token: the host and its agent client.
    async fn join(&self, host: &Value) -> (Value, reqwest::Client) {
        let token = self.join_token_at(chrono::Utc::now()).await;
        let (resp, key_pem) = self.try_join(&token, host).await;
        let joined = ok_json(resp, StatusCode::OK).await;
        let credentials = nubis_pki::HostCredentials {
            key_pem,
            cert_pem: joined["cert_pem"].as_str().unwrap().to_owned(),
            ca_pem: joined["ca_pem"].as_str().unwrap().to_owned(),
        };
        let client = credentials
            .controller_client(reqwest::Client::builder().timeout(Duration::from_secs(60)))
            .unwrap();
        (joined["host"].clone(), client)
    }

    /// A request to the agent protocol as the host `register_host` joined.
    fn agent_req(&self, method: Method, path: &str) -> RequestBuilder {
        let client = self.agent.lock().unwrap().clone().expect("a host joined");
        self.agent_req_as(&client, method, path)
    }

    /// A request to the agent protocol with `client` (its certificate).
    fn agent_req_as(&self, client: &reqwest::Client, method: Method, path: &str) -> RequestBuilder {
        client.request(method, format!("{}{path}", self.cluster_base))
    }
}

/// One bad request: a name for failure messages, the body, the expected
/// status and code, and what the message must mention.
struct Case {
    what: String,
    body: Value,
    want: Want,
    mention: &'static str,
}

fn case(what: impl Into<String>, body: Value, want: Want, mention: &'static str) -> Case {
    Case {
        what: what.into(),
        body,
        want,
        mention,
    }
}

/// Asserts the status and returns the JSON body.
async fn ok_json(resp: Response, status: StatusCode) -> Value {
    let got = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts that `resp` is an API error: the wanted status, a JSON body of
/// exactly `{"error":{"code","message"}}` with the wanted code, and a
/// readable message that mentions `mention`. `what` names the case in
/// failures. Returns the message.
async fn assert_error(what: &str, resp: Response, want: Want, mention: &str) -> String {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap();
    assert_eq!(status, want.0, "{what}: body {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content type {content_type:?}, body {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {text}"));
    let keys = |v: &Value| -> Vec<String> {
        let obj = v.as_object();
        let obj = obj.unwrap_or_else(|| panic!("{what}: not an object: {text}"));
        obj.keys().cloned().collect()
    };
    assert_eq!(keys(&body), ["error"], "{what}: {text}");
    assert_eq!(keys(&body["error"]), ["code", "message"], "{what}: {text}");
    let code = body["error"]["code"].as_str().expect("code is a string");
    assert_eq!(code, want.1, "{what}: {text}");
    let message = body["error"]["message"].as_str().expect("a string message");
    assert!(
        !message.trim().is_empty() && message.len() < 1000,
        "{what}: message is not readable: {text}"
    );
    assert!(
        !message.chars().any(char::is_control),
        "{what}: raw control characters in the message: {text}"
    );
    assert!(
        message.contains(mention),
        "{what}: message {message:?} does not mention {mention:?}"
    );
    // A body that parsed but did not validate: the parser's position in it
    // is noise ("... at line 1 column 33"); only syntax errors keep it.
    if want.0 == INVALID.0 {
        assert!(
            !message.contains(" at line "),
            "{what}: parser position in a validation message: {message:?}"
        );
    }
    message.to_owned()
}

fn id(v: &Value) -> &str {
    v["id"].as_str().expect("an id")
}

/// `base` with `key` set to `value`; `Value::Null` removes the key.
fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut v = base.clone();
    let obj = v.as_object_mut().unwrap();
    if value.is_null() {
        obj.remove(key);
    } else {
        obj.insert(key.into(), value);
    }
    v
}

fn image_record(name: &str, format: &str) -> Value {
    json!({"name": name, "os": "debian", "version": "12", "format": format})
}

fn host_body() -> Value {
    json!({
        "name": "h1", "url": "https://127.0.0.1:9",
        "vcpus": 2, "memory_mib": 4096, "disk_gib": 100, "accel": "tcg",
        "cpu_model": "Test CPU"
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `valid` with `field` set to each name every resource refuses.
fn bad_name_cases(valid: &Value, field: &str) -> Vec<Case> {
    let names: [(Value, &str); 16] = [
        (json!(""), "must not be empty"),
        (json!("a/b"), "'/'"),
        (json!("/"), "'/'"),
        (json!(".."), "'..'"),
        (json!("a..b"), "'..'"),
        (json!("line\nbreak"), "control characters"),
        (json!("bell\u{7}"), "control characters"),
        (json!("del\u{7f}"), "control characters"),
        (json!("tab\there"), "control characters"),
        (json!("nul\u{0}"), "control characters"),
        (json!(" lead"), "white space"),
        (json!("trail "), "white space"),
        (json!("x".repeat(64)), "at most 63"),
        (json!("é".repeat(64)), "at most 63"),
        (json!(42), "invalid type"),
        (json!(["a"]), "invalid type"),
    ];
    let mut cases: Vec<Case> = names
        .into_iter()
        .map(|(n, why)| case(format!("{field} {n}"), with(valid, field, n), INVALID, why))
        .collect();
    let what = format!("no {field}");
    cases.push(case(
        what,
        with(valid, field, Value::Null),
        INVALID,
        "missing",
    ));
    cases
}

/// A hand-built, valid qcow2 v3 image: 64 KiB clusters holding the header,
/// the refcount table, a refcount block and the L1 table; optionally naming a
/// backing file (which makes it unacceptable).
fn qcow2(virtual_size: u64, backing: Option<&str>) -> Vec<u8> {
    const C: usize = 1 << 16;
    fn put32(v: &mut [u8], off: usize, x: u32) {
        v[off..off + 4].copy_from_slice(&x.to_be_bytes());
    }
    fn put64(v: &mut [u8], off: usize, x: u64) {
        v[off..off + 8].copy_from_slice(&x.to_be_bytes());
    }
    let mut v = vec![0u8; 4 * C];
    v[..4].copy_from_slice(b"QFI\xfb");
    put32(&mut v, 4, 3); // version
    put32(&mut v, 20, 16); // cluster_bits
    put64(&mut v, 24, virtual_size);
    let per_l1 = (C as u64) * (C as u64 / 8);
    put32(&mut v, 36, virtual_size.div_ceil(per_l1).max(1) as u32); // l1_size
    put64(&mut v, 40, 3 * C as u64); // l1_table_offset
    put64(&mut v, 48, C as u64); // refcount_table_offset
    put32(&mut v, 56, 1); // refcount_table_clusters
    put32(&mut v, 96, 4); // refcount_order
    put32(&mut v, 100, 112); // header_length; the extensions' end marker follows
    if let Some(name) = backing {
        let off = 112 + 8;
        put64(&mut v, 8, off as u64);
        put32(&mut v, 16, name.len() as u32);
        v[off..off + name.len()].copy_from_slice(name.as_bytes());
    }
    put64(&mut v, C, 2 * C as u64); // refcount table -> block
    for i in 0..4 {
        v[2 * C + 2 * i + 1] = 1; // the four clusters are in use
    }
    v
}

/// The files in a directory (uploads in progress included).
fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}
