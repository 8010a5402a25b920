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

use nubis_controller::server::{start, ControllerConfig, RunningController};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const AGENT_TOKEN: &str = "test-agent-token-0123456789";
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
/// stopped when dropped.
struct Cloud {
    base: String,
    http: reqwest::Client,
    controller: RunningController,
    dir: tempfile::TempDir,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.controller.task.abort();
    }
}

impl Cloud {
    async fn start() -> Self {
        Self::start_with_token_ttl(Duration::from_secs(3600)).await
    }

    async fn start_with_token_ttl(token_ttl: Duration) -> Self {
        Self::start_with(token_ttl, Default::default()).await
    }

    async fn start_with(token_ttl: Duration, clock: nubis_controller::clock::Clock) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nubis-api-test-")
            .tempdir()
            .expect("temp dir");
        let config = ControllerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!("sqlite://{}", dir.path().join("nubis.db").display()),
            data_dir: dir.path().to_owned(),
            agent_token: AGENT_TOKEN.into(),
            token_ttl,
            max_image_bytes: MAX_IMAGE_BYTES,
            dns_zone: "nubis.internal".into(),
            rental: Default::default(),
            clock,
            console: Default::default(),
        };
        let controller = start(config).await.expect("controller starts");
        Self {
            base: format!("http://{}", controller.addr),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            controller,
            dir,
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

    /// Registers a host the way an agent does: 2 vCPUs (8 with overcommit),
    /// 4 GiB memory, 100 GiB disk.
    async fn register_host(&self) -> Value {
        let resp = self
            .req(Method::POST, "/v1/agent/hosts", None)
            .header(nubis_api::agent::AGENT_TOKEN_HEADER, AGENT_TOKEN)
            .json(&host_body())
            .send()
            .await
            .unwrap();
        ok_json(resp, StatusCode::OK).await
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
        "name": "h1", "url": "http://127.0.0.1:9",
        "vcpus": 2, "memory_mib": 4096, "disk_gib": 100, "accel": "tcg"
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

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

#[tokio::test]
async fn register_rejects_bad_input_and_creates_no_user() {
    let cloud = Cloud::start().await;
    let valid = json!({"name": "alice", "password": PASSWORD});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let mut cases = bad_name_cases(&valid, "name");
    #[rustfmt::skip]
    let more = [
        case("short password", v("password", json!("1234567")), INVALID, "at least 8"),
        case("empty password", v("password", json!("")), INVALID, "at least 8"),
        case("long password", v("password", json!("p".repeat(1025))), INVALID, "at most 1024"),
        case("password 12345678", v("password", json!(12345678)), INVALID, "password"),
        case("no password", v("password", Value::Null), INVALID, "missing field `password`"),
        case("asking to be admin", v("admin", json!(true)), INVALID, "unknown field `admin`"),
        case("array body", json!([]), INVALID, "expected"),
        case("null body", json!(null), INVALID, "invalid type"),
        case("string body", json!("alice"), INVALID, "invalid type"),
    ];
    cases.extend(more);
    for c in &cases {
        let resp = cloud.post(None, "/v1/users", &c.body).await;
        assert_error(&c.what, resp, c.want, c.mention).await;
    }

    // Bodies that are not JSON, not declared as JSON, or too big.
    let json_ct = Some("application/json");
    for (what, body) in [
        ("truncated JSON", r#"{"name": "alice", "pass"#),
        ("not JSON", "{name: alice}"),
        (
            "trailing garbage",
            r#"{"name": "alice", "password": "12345678"} x"#,
        ),
        ("empty body", ""),
    ] {
        let resp = cloud.post_raw(None, "/v1/users", json_ct, body).await;
        assert_error(what, resp, BAD, "JSON").await;
    }
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let resp = cloud
            .post_raw(None, "/v1/users", ct, valid.to_string())
            .await;
        let what = format!("content type {ct:?}");
        assert_error(&what, resp, UNSUPPORTED, "application/json").await;
    }
    let huge = v("password", json!("p".repeat(MIB))).to_string();
    assert!(huge.len() > nubis_controller::http::MAX_JSON_BODY);
    let resp = cloud.post_raw(None, "/v1/users", json_ct, huge).await;
    assert_error("body over 1 MiB", resp, TOO_LARGE, "too large").await;

    // Nothing was created: the first user of a cloud becomes its admin, so
    // alice would not be one if any refused request had made a user.
    let alice = cloud.register("alice").await;
    assert_eq!(alice["admin"], true, "{alice}");
    assert_eq!(alice["name"], "alice");

    // The boundaries are accepted: a 63-character name, an 8-character password.
    let body = json!({"name": "n".repeat(63), "password": "12345678"});
    let user = ok_json(
        cloud.post(None, "/v1/users", &body).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(user["admin"], false, "{user}");
}

#[tokio::test]
async fn register_duplicate_name_is_409_and_changes_nothing() {
    let cloud = Cloud::start().await;
    let first = cloud.register("alice").await;
    let again = json!({"name": "alice", "password": "another password"});
    let resp = cloud.post(None, "/v1/users", &again).await;
    let msg = assert_error("duplicate user", resp, CONFLICT, "already exists").await;
    assert!(msg.contains("alice"), "{msg}");
    // The first account is intact: its password still works, the second
    // one does not, and it is the same (admin) user.
    let ok = ok_json(cloud.login("alice", PASSWORD).await, StatusCode::CREATED).await;
    assert_eq!(ok["user"]["id"], first["id"]);
    assert_eq!(ok["user"]["admin"], true);
    let resp = cloud.login("alice", "another password").await;
    let what = "login with the duplicate's password";
    assert_error(what, resp, UNAUTHORIZED, "wrong user name or password").await;
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_bad_and_revoked_tokens_are_401() {
    let cloud = Cloud::start().await;
    let token = cloud.user("alice").await;
    let expired = "invalid or expired token";
    let scheme = "'Bearer <token>'";
    // (what, Authorization header, what the message mentions)
    #[rustfmt::skip]
    let cases: [(&str, Option<String>, &str); 8] = [
        ("no Authorization header", None, "missing 'Authorization"),
        ("garbage token", Some("Bearer garbage".into()), expired),
        ("unknown token", Some(format!("Bearer nbs_{}", "0".repeat(64))), expired),
        ("token plus one character", Some(format!("Bearer {token}x")), expired),
        ("empty bearer", Some("Bearer ".into()), scheme),
        ("scheme only", Some("Bearer".into()), scheme),
        ("basic auth", Some("Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==".into()), scheme),
        ("token without scheme", Some(token.clone()), scheme),
    ];
    for (what, header, why) in &cases {
        for path in ["/v1/users/me", "/v1/servers", "/v1/images", "/v1/flavors"] {
            let mut r = cloud.req(Method::GET, path, None);
            if let Some(h) = header {
                r = r.header(AUTHORIZATION, h);
            }
            let resp = r.send().await.unwrap();
            assert_error(&format!("{what} on {path}"), resp, UNAUTHORIZED, why).await;
        }
    }

    // Authentication comes before validation: an anonymous bad request is
    // told to log in, not what is wrong with its body.
    let body = json!({"name": "", "image": "x"});
    let resp = cloud.post(None, "/v1/servers", &body).await;
    assert_error("anonymous bad create", resp, UNAUTHORIZED, "Authorization").await;
    let resp = cloud.send(Method::DELETE, "/v1/tokens/current", None).await;
    assert_error("anonymous logout", resp, UNAUTHORIZED, "Authorization").await;

    // Logout revokes exactly the token used, not the user's other sessions.
    let other = cloud.token("alice").await;
    cloud.get_ok(&token, "/v1/users/me").await;
    let resp = cloud
        .send(Method::DELETE, "/v1/tokens/current", Some(&token))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for path in ["/v1/users/me", "/v1/servers"] {
        let resp = cloud.get(&token, path).await;
        let what = format!("revoked token on {path}");
        assert_error(&what, resp, UNAUTHORIZED, "log in again").await;
    }
    let resp = cloud
        .send(Method::DELETE, "/v1/tokens/current", Some(&token))
        .await;
    assert_error("second logout", resp, UNAUTHORIZED, expired).await;
    let me = cloud.get_ok(&other, "/v1/users/me").await;
    assert_eq!(me["name"], "alice");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let cloud = Cloud::start().await;
    cloud.register("alice").await;
    let resp = cloud.login("alice", "wrong password").await;
    let wrong = assert_error("wrong password", resp, UNAUTHORIZED, "").await;
    let resp = cloud.login("nobody", PASSWORD).await;
    let unknown = assert_error("unknown user", resp, UNAUTHORIZED, "").await;
    assert_eq!(
        wrong, unknown,
        "the answers must not tell which names exist"
    );
    assert!(wrong.contains("wrong user name or password"), "{wrong}");
    let resp = cloud.login("alice", &PASSWORD.to_uppercase()).await;
    assert_error("password in upper case", resp, UNAUTHORIZED, "").await;
    let resp = cloud.login("Alice", PASSWORD).await;
    assert_error("name in another case", resp, UNAUTHORIZED, "").await;
}

#[tokio::test]
async fn expired_token_is_401() {
    let cloud = Cloud::start_with_token_ttl(Duration::from_secs(1)).await;
    cloud.register("alice").await;
    let login = ok_json(cloud.login("alice", PASSWORD).await, StatusCode::CREATED).await;
    let token = login["token"].as_str().unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(login["expires_at"].clone()).unwrap();
    let left = expires - chrono::Utc::now();
    assert!(left <= chrono::Duration::seconds(1), "expires_at {expires}");
    cloud.get_ok(token, "/v1/users/me").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for path in ["/v1/users/me", "/v1/servers"] {
        let resp = cloud.get(token, path).await;
        let what = format!("expired token on {path}");
        assert_error(&what, resp, UNAUTHORIZED, "expired").await;
    }
}

// ---------------------------------------------------------------------------
// Flavors
// ---------------------------------------------------------------------------

#[tokio::test]
async fn flavors_need_an_admin_and_valid_sizes() {
    let cloud = Cloud::start().await;
    let admin = cloud.user("alice").await;
    let user = cloud.user("bob").await;
    let defaults = cloud.get_ok(&user, "/v1/flavors").await;
    assert_eq!(defaults.as_array().unwrap().len(), 4, "{defaults}");
    let valid = json!({"name": "custom", "vcpus": 2, "memory_mib": 2048, "disk_gib": 20});
    let v = |k: &str, x: Value| with(&valid, k, x);

    let forbidden = [case("non-admin", valid.clone(), FORBIDDEN, "admin")];
    cloud.refuse_all(&user, "/v1/flavors", &forbidden).await;

    let vcpus = "vcpus must be between 1 and 64";
    let memory = "memory_mib must be between 64 and 262144 MiB";
    let disk = "disk_gib must be between 1 and 16384 GiB";
    #[rustfmt::skip]
    let mut cases = vec![
        case("vcpus 0", v("vcpus", json!(0)), INVALID, vcpus),
        case("vcpus -1", v("vcpus", json!(-1)), INVALID, vcpus),
        case("vcpus 65", v("vcpus", json!(65)), INVALID, vcpus),
        case("vcpus 1000", v("vcpus", json!(1000)), INVALID, vcpus),
        case("vcpus 1.5", v("vcpus", json!(1.5)), INVALID, "vcpus"),
        case("vcpus 1e9", v("vcpus", json!(1e9)), INVALID, "vcpus"),
        case("vcpus \"2\"", v("vcpus", json!("2")), INVALID, "vcpus"),
        case("vcpus u64::MAX", v("vcpus", json!(u64::MAX)), INVALID, "vcpus"),
        case("no vcpus", v("vcpus", Value::Null), INVALID, "missing field `vcpus`"),
        case("memory 0", v("memory_mib", json!(0)), INVALID, memory),
        case("memory 63", v("memory_mib", json!(63)), INVALID, memory),
        case("memory 1 TiB", v("memory_mib", json!(1 << 20)), INVALID, memory),
        case("disk 0", v("disk_gib", json!(0)), INVALID, disk),
        case("disk -1", v("disk_gib", json!(-1)), INVALID, disk),
        case("disk 16385", v("disk_gib", json!(16385)), INVALID, disk),
        case("disk 2.5", v("disk_gib", json!(2.5)), INVALID, "disk_gib"),
        case("unknown field", v("gpus", json!(1)), INVALID, "unknown field `gpus`"),
        case("duplicate name", v("name", json!("small")), CONFLICT, "'small' already exists"),
    ];
    cases.extend(bad_name_cases(&valid, "name"));
    cloud.refuse_all(&admin, "/v1/flavors", &cases).await;
    assert_eq!(cloud.get_ok(&admin, "/v1/flavors").await, defaults);

    // Positive control: the valid body is accepted from an admin.
    let resp = cloud.post(Some(&admin), "/v1/flavors", &valid).await;
    let created = ok_json(resp, StatusCode::CREATED).await;
    assert_eq!(created["vcpus"], 2);
    let after = cloud.get_ok(&user, "/v1/flavors").await;
    assert_eq!(after.as_array().unwrap().len(), 5);
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

#[tokio::test]
async fn image_records_are_validated() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let disk = cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let kernel = cloud
        .active_image(&alice, "kernel", "aki", b"kernel".to_vec())
        .await;
    cloud
        .active_image(&alice, "ramdisk", "ari", b"ramdisk".to_vec())
        .await;
    cloud
        .create_image(&alice, image_record("queued-kernel", "aki"))
        .await;
    let bob_kernel = cloud
        .active_image(&bob, "bobkernel", "aki", b"k".to_vec())
        .await;

    let valid = image_record("new", "raw");
    let v = |k: &str, x: Value| with(&valid, k, x);
    let mut cases = Vec::new();
    for field in ["name", "os", "version"] {
        cases.extend(bad_name_cases(&valid, field));
    }
    let variant = "unknown variant";
    let aki = "must be an active aki image";
    let on_disk = "kernel, initrd and cmdline belong on a qcow2 or raw image";
    let aki_with = |k: &str, x: Value| with(&image_record("k2", "aki"), k, x);
    let ari_with = |k: &str, x: Value| with(&image_record("r2", "ari"), k, x);
    let initrd_aki = with(&v("kernel", json!("kernel")), "initrd", json!("kernel"));
    #[rustfmt::skip]
    let more = [
        case("format vmdk", v("format", json!("vmdk")), INVALID, variant),
        case("format vdi", v("format", json!("vdi")), INVALID, variant),
        case("format QCOW2", v("format", json!("QCOW2")), INVALID, variant),
        case("format empty", v("format", json!("")), INVALID, variant),
        // serde_json calls a number where an enum belongs a syntax error.
        case("format 1", v("format", json!(1)), BAD, "format"),
        case("no format", v("format", Value::Null), INVALID, "missing field `format`"),
        case("visibility shared", v("visibility", json!("shared")), INVALID, variant),
        case("unknown field", v("size", json!(5)), INVALID, "unknown field `size`"),
        case("kernel missing", v("kernel", json!("nope")), BAD, "kernel image 'nope' not found"),
        case("kernel random id", v("kernel", json!(uuid::Uuid::new_v4())), BAD, "not found"),
        case("kernel empty", v("kernel", json!("")), BAD, "kernel image '' not found"),
        case("kernel is raw", v("kernel", json!("disk")), BAD, aki),
        case("kernel is ari", v("kernel", json!("ramdisk")), BAD, aki),
        case("kernel queued", v("kernel", json!("queued-kernel")), BAD, aki),
        case("bob's kernel", v("kernel", json!("bobkernel")), BAD, "not found"),
        case("bob's kernel id", v("kernel", bob_kernel["id"].clone()), BAD, "not found"),
        case("kernel 1", v("kernel", json!(1)), INVALID, "kernel"),
        case("initrd is aki", initrd_aki, BAD, "must be an active ari image"),
        case("initrd alone", v("initrd", json!("ramdisk")), BAD, "an initrd needs a kernel"),
        case("kernel on aki", aki_with("kernel", kernel["id"].clone()), BAD, on_disk),
        case("cmdline on aki", aki_with("cmdline", json!("quiet")), BAD, on_disk),
        case("kernel on ari", ari_with("kernel", json!("kernel")), BAD, on_disk),
        case("cmdline newline", v("cmdline", json!("console=ttyS0\ninit=/bin/sh")), BAD, "cmdline"),
        case("cmdline bell", v("cmdline", json!("quiet\u{7}")), BAD, "without control characters"),
        case("cmdline 2049", v("cmdline", json!("x".repeat(2049))), BAD, "at most 2048"),
        case("cmdline 1", v("cmdline", json!(1)), INVALID, "cmdline"),
        case("duplicate name", v("name", json!("disk")), CONFLICT, "'disk' already exists"),
    ];
    cases.extend(more);
    cloud.refuse_all(&alice, "/v1/images", &cases).await;
    let public = [case(
        "public",
        v("visibility", json!("public")),
        FORBIDDEN,
        "admin",
    )];
    cloud.refuse_all(&bob, "/v1/images", &public).await;
    let bob_images = cloud.get_ok(&bob, "/v1/images").await;
    assert_eq!(bob_images, json!([bob_kernel]), "bob sees only his own");

    // Positive controls: direct kernel boot with a cmdline of exactly 2048
    // characters; names are per project, so bob may have a "disk" too.
    let boot = json!({
        "name": "new", "os": "debian", "version": "12", "format": "raw",
        "kernel": "kernel", "initrd": "ramdisk", "cmdline": "x".repeat(2048),
    });
    let image = cloud.create_image(&alice, boot).await;
    assert_eq!(image["kernel"], kernel["id"]);
    assert_eq!(image["status"], "queued");
    cloud.create_image(&bob, image_record("disk", "raw")).await;
    let alice_disk = cloud.image(&alice, "disk").await;
    assert_eq!(alice_disk, disk, "each project sees its own 'disk'");
}

#[tokio::test]
async fn uploads_with_wrong_bytes_are_refused_and_the_image_stays_queued() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let raw = cloud.create_image(&alice, image_record("r", "raw")).await;
    let q = cloud.create_image(&alice, image_record("q", "qcow2")).await;
    let (raw, q) = (id(&raw).to_owned(), id(&q).to_owned());
    let mut vmdk = vec![0u8; 64 * 1024];
    vmdk[..4].copy_from_slice(b"KDMV");
    let random = uuid::Uuid::new_v4().to_string();
    let zeros = || vec![0u8; 4096];
    let (a, b) = (alice.as_str(), bob.as_str());
    let (r, qc, rnd) = (raw.as_str(), q.as_str(), random.as_str());

    // (what, who, image, bytes, expected error, what the message mentions)
    #[rustfmt::skip]
    let cases = [
        ("bob uploads to alice's image", b, r, zeros(), NOT_FOUND, "image not found"),
        ("unknown image id", a, rnd, zeros(), NOT_FOUND, "not found"),
        ("id not a uuid", a, "not-a-uuid", zeros(), NOT_FOUND, "not found"),
        ("image name, not id", a, "r", zeros(), NOT_FOUND, "not found"),
        ("empty upload", a, r, vec![], BAD, "the uploaded file is empty"),
        ("raw with qcow2 bytes", a, r, qcow2(GIB, None), BAD, "declared raw but its bytes are qcow2"),
        ("raw with vmdk bytes", a, r, vmdk, BAD, "vmdk, a format Nubis does not accept"),
        ("qcow2 with raw zeros", a, qc, vec![0; MIB], BAD, "declared qcow2 but its bytes are raw"),
        ("qcow2 backing file", a, qc, qcow2(GIB, Some("/etc/passwd")), BAD, "backing file '/etc/passwd'"),
        ("qcow2 virtual size 0", a, qc, qcow2(0, None), BAD, "virtual size of 0"),
        ("qcow2 header cut", a, qc, qcow2(GIB, None)[..50].to_vec(), BAD, "truncated"),
        ("qcow2 empty", a, qc, vec![], BAD, "empty"),
    ];
    for (what, who, image, bytes, want, why) in cases {
        let resp = cloud.upload(who, image, bytes).await;
        assert_error(what, resp, want, why).await;
        for image in [&raw, &q] {
            let now = cloud.image(a, image).await;
            assert_eq!(now["status"], "queued", "{what}: {now}");
            assert_eq!(now["size"], Value::Null, "{what}: {now}");
            assert_eq!(now["virtual_size"], Value::Null, "{what}: {now}");
            assert_eq!(now["checksum"], Value::Null, "{what}: {now}");
        }
        let left = files_in(&cloud.images_dir());
        assert!(left.is_empty(), "{what} left files behind: {left:?}");
    }

    // Positive control: bytes of the declared format are accepted, even when
    // bigger than the 1 MiB JSON limit.
    let bytes: Vec<u8> = (0..2 * MIB).map(|i| (i % 251) as u8).collect();
    let checksum = sha256_hex(&bytes);
    let image = ok_json(cloud.upload(a, &raw, bytes).await, StatusCode::OK).await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], 2 * MIB);
    assert_eq!(image["virtual_size"], 2 * MIB);
    assert_eq!(image["checksum"], checksum.as_str());
    let image = ok_json(cloud.upload(a, &q, qcow2(GIB, None)).await, StatusCode::OK).await;
    assert_eq!(image["virtual_size"], GIB);

    // Images are immutable: a second upload is refused and changes neither
    // the record nor the file.
    let before = cloud.image(a, &raw).await;
    let resp = cloud.upload(a, &raw, vec![7; 4096]).await;
    assert_error("second upload", resp, CONFLICT, "immutable").await;
    assert_eq!(cloud.image(a, &raw).await, before);
    let on_disk = std::fs::read(cloud.images_dir().join(&raw)).unwrap();
    assert_eq!(sha256_hex(&on_disk), checksum);
    // Another project still gets 404, not 409, for an image that exists.
    let resp = cloud.upload(b, &raw, vec![7; 4096]).await;
    assert_error(
        "bob uploads to an active image",
        resp,
        NOT_FOUND,
        "image not found",
    )
    .await;
    assert_eq!(files_in(&cloud.images_dir()), BTreeSet::from([raw, q]));
}

#[tokio::test]
async fn uploads_over_the_size_limit_are_413() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let image = cloud.create_image(&alice, image_record("big", "raw")).await;
    let too_big = vec![0u8; MAX_IMAGE_BYTES as usize + MIB];
    let resp = cloud.upload(&alice, id(&image), too_big).await;
    let msg = assert_error("oversized upload", resp, TOO_LARGE, "at most").await;
    assert!(msg.contains(&MAX_IMAGE_BYTES.to_string()), "{msg}");
    assert_eq!(cloud.image(&alice, id(&image)).await["status"], "queued");
    assert!(files_in(&cloud.images_dir()).is_empty());
    // Exactly at the limit is fine.
    let exact = vec![0u8; MAX_IMAGE_BYTES as usize];
    ok_json(
        cloud.upload(&alice, id(&image), exact).await,
        StatusCode::OK,
    )
    .await;
}

/// Two uploads of one image at once: images are immutable, so exactly one
/// may win and the other must get 409, and the record must describe the file
/// on disk. Upload A is held open mid-body while upload B runs, so the two
/// overlap every time.
#[tokio::test]
async fn concurrent_uploads_to_one_image_leave_one_consistent_file() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let image = cloud.create_image(&alice, image_record("r", "raw")).await;
    let image = id(&image);

    // Upload A: its body arrives in two parts, the second only when we say.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let a = cloud
        .req(
            Method::PUT,
            &format!("/v1/images/{image}/file"),
            Some(&alice),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let a = tokio::spawn(a);
    tx.send(Ok(vec![1u8; MIB])).await.unwrap();
    // A is past its checks once its temporary file exists.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while files_in(&cloud.images_dir()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "upload A never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Upload B, start to end, while A is in progress.
    let b = cloud
        .upload(&alice, image, vec![2u8; 2 * MIB])
        .await
        .status();
    tx.send(Ok(vec![1u8; MIB])).await.unwrap();
    drop(tx);
    let a = a.await.unwrap().unwrap().status();

    let mut statuses = [a, b];
    statuses.sort();
    let now = cloud.image(&alice, image).await;
    let on_disk = std::fs::read(cloud.images_dir().join(image)).unwrap();
    assert_eq!(
        now["checksum"].as_str(),
        Some(sha256_hex(&on_disk).as_str()),
        "the recorded checksum must be the file's (A {a}, B {b})"
    );
    let want = [StatusCode::OK, StatusCode::CONFLICT];
    assert_eq!(
        statuses, want,
        "one upload wins, the other is refused (A {a}, B {b})"
    );
    assert_eq!(
        files_in(&cloud.images_dir()),
        BTreeSet::from([image.to_owned()])
    );
}

/// An upload abandoned mid-body leaves no file behind and the image queued.
#[tokio::test]
async fn abandoned_upload_leaves_nothing_behind() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let image = cloud.create_image(&alice, image_record("r", "raw")).await;
    let image = id(&image);
    for how in ["client error", "client gone"] {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let upload = cloud
            .req(
                Method::PUT,
                &format!("/v1/images/{image}/file"),
                Some(&alice),
            )
            .body(reqwest::Body::wrap_stream(body))
            .send();
        let upload = tokio::spawn(upload);
        tx.send(Ok(vec![1u8; MIB])).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while files_in(&cloud.images_dir()).is_empty() {
            assert!(std::time::Instant::now() < deadline, "upload never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if how == "client error" {
            tx.send(Err(std::io::Error::other("disk on fire")))
                .await
                .unwrap();
            let _ = upload.await.unwrap();
        } else {
            upload.abort();
            let _ = upload.await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !files_in(&cloud.images_dir()).is_empty() {
            let left = files_in(&cloud.images_dir());
            assert!(std::time::Instant::now() < deadline, "{how}: left {left:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            cloud.image(&alice, image).await["status"],
            "queued",
            "{how}"
        );
    }
}

/// qcow2 images made by the real qemu-img (skipped without it).
#[tokio::test]
async fn qemu_img_images_are_checked_like_hand_built_ones() {
    let available = std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("note: qemu-img not found; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let make = |name: &str, extra: &[&str]| {
        let path = tmp.path().join(name);
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .args(extra)
            .arg(&path)
            .arg("2G")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(path).unwrap()
    };
    let backed = make("backed.qcow2", &["-b", "/etc/passwd", "-F", "raw"]);
    let plain = make("plain.qcow2", &[]);

    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    cloud.register_host().await;
    let q = cloud.create_image(&alice, image_record("q", "qcow2")).await;
    let r = cloud.create_image(&alice, image_record("r", "raw")).await;
    let resp = cloud.upload(&alice, id(&q), backed).await;
    let what = "qemu-img qcow2 with a backing file";
    assert_error(what, resp, BAD, "backing file '/etc/passwd'").await;
    let resp = cloud.upload(&alice, id(&r), plain.clone()).await;
    let what = "qemu-img qcow2 declared raw";
    assert_error(what, resp, BAD, "declared raw but its bytes are qcow2").await;
    for image in [&q, &r] {
        assert_eq!(cloud.image(&alice, id(image)).await["status"], "queued");
    }
    assert!(files_in(&cloud.images_dir()).is_empty());

    // Accepted as qcow2, with the virtual size from its header: a 1 GiB disk
    // is too small for it.
    let image = ok_json(cloud.upload(&alice, id(&q), plain).await, StatusCode::OK).await;
    assert_eq!(image["virtual_size"], 2 * GIB);
    let body = json!({"name": "web", "image": "q", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let small = [case(
        "disk below virtual size",
        body,
        BAD,
        "smaller than the image",
    )];
    cloud.refuse_all(&alice, "/v1/servers", &small).await;
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn server_create_rejects_bad_input_and_creates_nothing() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; MIB])
        .await;
    cloud
        .active_image(&alice, "big", "qcow2", qcow2(2 * GIB, None))
        .await;
    cloud
        .active_image(&alice, "kernel", "aki", b"kernel".to_vec())
        .await;
    cloud
        .active_image(&alice, "ramdisk", "ari", b"ramdisk".to_vec())
        .await;
    cloud
        .create_image(&alice, image_record("queued", "raw"))
        .await;
    let bobs = cloud
        .active_image(&bob, "bobdisk", "raw", vec![0; 4096])
        .await;
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, json!([]));

    let valid =
        json!({"name": "web", "image": "disk", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let by_flavor = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let f = |k: &str, x: Value| with(&by_flavor, k, x);
    let vcpus = "vcpus must be between 1 and 64";
    let memory = "memory_mib must be between 64 and 262144 MiB";
    let disk = "disk_gib must be between 1 and 16384 GiB";
    let both = "give either a flavor or vcpus/memory_mib/disk_gib, not both";
    let all = "vcpus, memory_mib and disk_gib must all be given (or a flavor)";
    let smaller = "disk_gib 1 is smaller than the image";
    let room = "no host has room for";
    let mut disk_null = valid.clone();
    disk_null["disk_gib"] = Value::Null;
    let zeros = with(&v("vcpus", json!(0)), "memory_mib", json!(0));
    let only_vcpus = json!({"name": "web", "image": "disk", "vcpus": 1});
    #[rustfmt::skip]
    let mut cases = vec![
        case("vcpus 0", v("vcpus", json!(0)), INVALID, vcpus),
        case("vcpus -1", v("vcpus", json!(-1)), INVALID, vcpus),
        case("vcpus 65", v("vcpus", json!(65)), INVALID, vcpus),
        case("vcpus 10^9", v("vcpus", json!(1_000_000_000)), INVALID, vcpus),
        case("vcpus i64::MIN", v("vcpus", json!(i64::MIN)), INVALID, vcpus),
        case("vcpus 1e9", v("vcpus", json!(1e9)), INVALID, "vcpus"),
        case("vcpus 1.5", v("vcpus", json!(1.5)), INVALID, "vcpus"),
        case("vcpus u64::MAX", v("vcpus", json!(u64::MAX)), INVALID, "vcpus"),
        case("vcpus \"1\"", v("vcpus", json!("1")), INVALID, "vcpus"),
        case("vcpus true", v("vcpus", json!(true)), INVALID, "vcpus"),
        case("vcpus {}", v("vcpus", json!({})), INVALID, "vcpus"),
        case("memory 0", v("memory_mib", json!(0)), INVALID, memory),
        case("memory 63", v("memory_mib", json!(63)), INVALID, memory),
        case("memory -1", v("memory_mib", json!(-1)), INVALID, memory),
        case("memory 262145", v("memory_mib", json!(262_145)), INVALID, memory),
        case("memory 2^60", v("memory_mib", json!(1u64 << 60)), INVALID, memory),
        case("memory \"lots\"", v("memory_mib", json!("lots")), INVALID, "memory_mib"),
        case("memory 128.0", v("memory_mib", json!(128.0)), INVALID, "memory_mib"),
        case("disk 0", v("disk_gib", json!(0)), INVALID, disk),
        case("disk -5", v("disk_gib", json!(-5)), INVALID, disk),
        case("disk 16385", v("disk_gib", json!(16_385)), INVALID, disk),
        case("disk 2^40", v("disk_gib", json!(1u64 << 40)), INVALID, disk),
        case("disk \"1G\"", v("disk_gib", json!("1G")), INVALID, "disk_gib"),
        case("vcpus and memory 0", zeros, INVALID, "must be between"),
        case("flavor and sizes", v("flavor", json!("tiny")), BAD, both),
        case("flavor and vcpus", f("vcpus", json!(1)), BAD, both),
        case("flavor and disk", f("disk_gib", json!(5)), BAD, both),
        case("only vcpus", only_vcpus, BAD, all),
        case("no disk_gib", v("disk_gib", Value::Null), BAD, all),
        case("disk_gib null", disk_null, BAD, all),
        case("no memory_mib", v("memory_mib", Value::Null), BAD, all),
        case("no size at all", f("flavor", Value::Null), BAD, "a flavor or vcpus"),
        case("unknown flavor", f("flavor", json!("huge")), BAD, "flavor 'huge' not found"),
        case("empty flavor", f("flavor", json!("")), BAD, "flavor '' not found"),
        case("flavor 7", f("flavor", json!(7)), INVALID, "flavor"),
        case("unknown image", v("image", json!("nope")), BAD, "image 'nope' not found"),
        case("random image id", v("image", json!(uuid::Uuid::new_v4())), BAD, "not found"),
        case("bob's image", v("image", json!("bobdisk")), BAD, "image 'bobdisk' not found"),
        case("bob's image id", v("image", bobs["id"].clone()), BAD, "not found"),
        case("no image", v("image", Value::Null), INVALID, "missing field `image`"),
        case("image 1", v("image", json!(1)), INVALID, "image"),
        case("queued image", v("image", json!("queued")), BAD, "has no file yet; upload it first"),
        case("aki image", v("image", json!("kernel")), BAD, "is a aki image, not a disk image"),
        case("ari image", v("image", json!("ramdisk")), BAD, "is a ari image, not a disk image"),
        case("disk < image", v("image", json!("big")), BAD, smaller),
        case("flavor disk < image", f("image", json!("big")), BAD, smaller),
        case("unknown field", v("host", json!("h1")), INVALID, "unknown field `host`"),
        // Well-formed sizes that no host can hold.
        case("64 vcpus", v("vcpus", json!(64)), NO_CAPACITY, room),
        case("256 GiB memory", v("memory_mib", json!(262_144)), NO_CAPACITY, room),
        case("16 TiB disk", v("disk_gib", json!(16_384)), NO_CAPACITY, room),
        case("large flavor", f("flavor", json!("large")), NO_CAPACITY, room),
    ];
    cases.extend(bad_name_cases(&valid, "name"));
    cloud.refuse_all(&alice, "/v1/servers", &cases).await;

    // Bodies that are not JSON, not declared as JSON, or too big.
    let json_ct = Some("application/json");
    let text = valid.to_string();
    let huge = v("image", json!("x".repeat(MIB + 1))).to_string();
    #[rustfmt::skip]
    let raw: [(&str, Option<&str>, String, Want, &str); 4] = [
        ("malformed", json_ct, r#"{"name":"web","#.into(), BAD, "malformed JSON"),
        ("text/plain", Some("text/plain"), text.clone(), UNSUPPORTED, "application/json"),
        ("no content type", None, text, UNSUPPORTED, "application/json"),
        ("over 1 MiB", json_ct, huge, TOO_LARGE, "too large"),
    ];
    for (what, ct, body, want, why) in raw {
        let resp = cloud.post_raw(Some(&alice), "/v1/servers", ct, body).await;
        assert_error(what, resp, want, why).await;
    }
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, json!([]));
    assert_eq!(cloud.get_ok(&bob, "/v1/servers").await, json!([]));

    // Positive controls: the valid body is accepted; a disk exactly the
    // image's virtual size is fine; so is a 63-character name.
    let resp = cloud.post(Some(&alice), "/v1/servers", &valid).await;
    let web = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(web["status"], "building", "{web}");
    let exact = with(&v("image", json!("big")), "disk_gib", json!(2));
    let exact = with(&exact, "name", json!("big"));
    let long = v("name", json!("n".repeat(63)));
    for body in [exact, long] {
        let resp = cloud.post(Some(&alice), "/v1/servers", &body).await;
        ok_json(resp, StatusCode::ACCEPTED).await;
    }
    let listed = cloud.get_ok(&alice, "/v1/servers").await;
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // Names are unique per project: a second "web" is a 409 and changes
    // nothing, but another project may use the name.
    let exists = "a server named 'web' already exists in this project";
    let duplicates = [
        case("duplicate name", valid.clone(), CONFLICT, exists),
        case(
            "duplicate name, by flavor",
            by_flavor.clone(),
            CONFLICT,
            exists,
        ),
    ];
    cloud.refuse_all(&alice, "/v1/servers", &duplicates).await;
    let bobs_web = v("image", json!("bobdisk"));
    let resp = cloud.post(Some(&bob), "/v1/servers", &bobs_web).await;
    let created = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(created["name"], "web");
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, listed);
    assert_eq!(cloud.get_ok(&bob, "/v1/servers").await, json!([created]));
}

#[tokio::test]
async fn server_create_without_hosts_is_503_and_creates_nothing() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let body = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let cases = [case(
        "no hosts",
        body,
        NO_HOSTS,
        "no host is up to run servers",
    )];
    cloud.refuse_all(&alice, "/v1/servers", &cases).await;
}

// ---------------------------------------------------------------------------
// Networks and key pairs
// ---------------------------------------------------------------------------

#[tokio::test]
async fn networks_reject_bad_input_and_create_nothing() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let networks = cloud.get_ok(&alice, "/v1/networks").await;
    assert_eq!(
        networks[0]["name"], "default",
        "made on first use: {networks}"
    );
    let default_cidr = networks[0]["cidr"].as_str().unwrap().to_owned();
    let bobs = json!({"name": "bobnet", "cidr": "10.20.0.0/24"});
    ok_json(
        cloud.post(Some(&bob), "/v1/networks", &bobs).await,
        StatusCode::CREATED,
    )
    .await;

    let valid = json!({"name": "net1", "cidr": "10.10.0.0/24"});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let cidr = |c: &str| v("cidr", json!(c));
    let gateway = |g: &str| v("gateway", json!(g));
    let not_host = "is not a host address of 10.10.0.0/24";
    let overlaps = "overlaps an existing network";
    let zone = "is not a DNS zone";
    let mut cases = bad_name_cases(&valid, "name");
    #[rustfmt::skip]
    let more = [
        case("host bits set", cidr("10.10.0.1/24"), INVALID, "has host bits set; did you mean 10.10.0.0/24?"),
        case("a /8", cidr("10.0.0.0/8"), INVALID, "between /16 and /29"),
        case("a /30", cidr("10.10.0.0/30"), INVALID, "between /16 and /29"),
        case("a /32", cidr("10.10.0.1/32"), INVALID, "between /16 and /29"),
        case("no prefix", cidr("10.10.0.0"), INVALID, "is not a CIDR like 10.0.0.0/24"),
        case("IPv6", cidr("fd00::/64"), INVALID, "IPv4"),
        case("octet 300", cidr("10.300.0.0/24"), INVALID, "IPv4"),
        case("prefix 99", cidr("10.10.0.0/99"), INVALID, "over 32"),
        case("prefix -1", cidr("10.10.0.0/-1"), INVALID, "no valid prefix length"),
        case("empty cidr", cidr(""), INVALID, "is not a CIDR"),
        case("cidr 5", v("cidr", json!(5)), INVALID, "cidr"),
        case("no cidr", v("cidr", Value::Null), INVALID, "missing field `cidr`"),
        case("gateway outside", gateway("10.10.1.1"), BAD, not_host),
        case("gateway = network", gateway("10.10.0.0"), BAD, not_host),
        case("gateway = broadcast", gateway("10.10.0.255"), BAD, not_host),
        case("gateway not an ip", gateway("router"), INVALID, "gateway"),
        case("gateway IPv6", gateway("fd00::1"), INVALID, "gateway"),
        case("zone with space", v("dns_zone", json!("bad zone")), INVALID, zone),
        case("zone with -label", v("dns_zone", json!("-x.example")), INVALID, zone),
        case("zone empty", v("dns_zone", json!("")), INVALID, zone),
        case("zone a..b", v("dns_zone", json!("a..b")), INVALID, zone),
        case("unknown field", v("vlan", json!(7)), INVALID, "unknown field `vlan`"),
        case("overlaps default", cidr(&default_cidr), CONFLICT, overlaps),
        case("contains default", cidr("10.64.0.0/16"), CONFLICT, overlaps),
        case("inside bob's", cidr("10.20.0.128/25"), CONFLICT, overlaps),
        case("duplicate name", v("name", json!("default")), CONFLICT, "'default' already exists"),
    ];
    cases.extend(more);
    cloud.refuse_all(&alice, "/v1/networks", &cases).await;
    assert_eq!(cloud.get_ok(&alice, "/v1/networks").await, networks);

    // Positive control, with the gateway at the top of the range.
    let body = gateway("10.10.0.254");
    let resp = cloud.post(Some(&alice), "/v1/networks", &body).await;
    let net1 = ok_json(resp, StatusCode::CREATED).await;
    assert_eq!(net1["gateway"], "10.10.0.254");
    // Another project's network is not found, by id or by name.
    for path in [
        format!("/v1/networks/{}", id(&net1)),
        "/v1/networks/net1".into(),
    ] {
        let resp = cloud.get(&bob, &path).await;
        assert_error(
            &format!("bob GET {path}"),
            resp,
            NOT_FOUND,
            "network not found",
        )
        .await;
    }
    let path = format!("/v1/networks/{}", id(&net1));
    let resp = cloud.send(Method::DELETE, &path, Some(&bob)).await;
    assert_error("bob deletes alice's network", resp, NOT_FOUND, "not found").await;
    let resp = cloud
        .send(Method::DELETE, "/v1/networks/net1", Some(&alice))
        .await;
    assert_error("delete by name, not id", resp, NOT_FOUND, "not found").await;
    let listed = cloud.get_ok(&alice, "/v1/networks").await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}

/// OpenSSH public keys that must be refused: a 1024-bit RSA key and a DSA
/// key, both made by `ssh-keygen`.
const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDDvPqqBVju8aV0mL5u1J8Ushi3XiT0HihK4NfQzYkpmLav5il5w+LGr7udjYRheFv+dSUFaui7h6dD5a3KvWjrmKyG0KTOn6HS7CVtIQK0c48ngr3Pz8AeLlGextWHSzIDHX45cqM5Ftbt2HnHarNUN9iUg84/yEGfBzy3k8nC+Q== test";
const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAN0TD8rSfhiA+N+Lwl7t91uU01c3yg72hg1E/SMp5ziePws18LtBRrxgKq03kmzWBuLCT8nvmtVfQEO5jqW6qdVyvSbg/dQXxJso7tLtwhHI2JBhQbPa6m/F1t17WZ3lAH4Mn0GiDHdHqpzTrtv7OkmWqn8c2mdi5mlZeR85qQpbAAAAFQDc5n6eXL0YZXgMDPxSOAiHEvpUTwAAAIEAjasSXuicP+a7s8ykwJWPgi8IAXoq/vTUCvHd/yj2L2hJvJKpeFh1PXqTd9L/zAN7EZP5C3Ys8DKZ3nvGPBDNbaD/zdMjL3Hk3NYQ+aqtRXkItn1wUOX+K0PQsjGao6RnHCGQqr0VdByFMXANCBYS5aY0iN4w+bGaZyejmKJFRMwAAACBANepJ7yv5R6mIOhlUGOKsXXg0036HthPuPC/CGHnkH+yRVyyE2yVhsRH9Hszxy1o/1u2+jg9NgoPGcKKb8VuSiIHj6uSIYXBtGR4a1OcmxlsgS3cbCQETLxLIhx+FgtDYGz7elqW/NoMrjqQqvvZQq2sYaqQsyj/PKaEom5Sy01p test";
/// Keys that must be accepted.
const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLHTEmjS1hsJonp4W8MljAoeYDHxdkssUOjs1YEb9sJXqTsXJg92X+1YuFiN8Gjq/3V20dPSUZfvw/j1T9B9q1s= test";

#[tokio::test]
async fn keypairs_reject_bad_keys_and_create_nothing() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let valid = json!({"name": "k1", "public_key": ED25519});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let key = |k: &str| v("public_key", json!(k));
    let invalid_key = "public_key is not a valid OpenSSH public key";
    let one_line = "public_key must be a single OpenSSH public key line";
    let base64 = ED25519.split(' ').nth(1).unwrap();
    let mut cases = bad_name_cases(&valid, "name");
    #[rustfmt::skip]
    let more = [
        case("empty key", key(""), BAD, invalid_key),
        case("type only", key("ssh-ed25519"), BAD, invalid_key),
        case("bad base64", key("ssh-ed25519 notbase64!"), BAD, invalid_key),
        case("prose", key("hello world"), BAD, invalid_key),
        case("wrong type name", key(&format!("ssh-rsa {base64}")), BAD, invalid_key),
        case("truncated", key(&ED25519[..60]), BAD, invalid_key),
        case("a private key", key("-----BEGIN OPENSSH PRIVATE KEY-----"), BAD, invalid_key),
        case("two lines", key(&format!("{ED25519}\n{ED25519}")), BAD, one_line),
        case("carriage return", key(&format!("{ED25519}\rx")), BAD, one_line),
        case("over 8 KiB", key(&format!("{ED25519} {}", "c".repeat(8192))), BAD, one_line),
        case("RSA 1024", key(RSA_1024), BAD, "RSA keys must have at least 2048 bits"),
        case("DSA", key(DSA), BAD, "not accepted"),
        case("key 5", v("public_key", json!(5)), INVALID, "public_key"),
        case("private_key given", v("private_key", json!("x")), INVALID, "unknown field `private_key`"),
    ];
    cases.extend(more);
    cloud.refuse_all(&alice, "/v1/keypairs", &cases).await;
    assert_eq!(cloud.get_ok(&alice, "/v1/keypairs").await, json!([]));

    // Positive controls: import an ed25519 key, also with surrounding white
    // space; generate one.
    let resp = cloud.post(Some(&alice), "/v1/keypairs", &valid).await;
    let k1 = ok_json(resp, StatusCode::CREATED).await;
    assert!(
        k1["fingerprint"].as_str().unwrap().starts_with("SHA256:"),
        "{k1}"
    );
    assert_eq!(k1["private_key"], Value::Null);
    let body = json!({"name": "k2", "public_key": format!(" {ED25519}\r\n")});
    ok_json(
        cloud.post(Some(&alice), "/v1/keypairs", &body).await,
        StatusCode::CREATED,
    )
    .await;
    let body = json!({"name": "k3"});
    let k3 = ok_json(
        cloud.post(Some(&alice), "/v1/keypairs", &body).await,
        StatusCode::CREATED,
    )
    .await;
    assert!(k3["private_key"]
        .as_str()
        .unwrap()
        .contains("OPENSSH PRIVATE KEY"));
    // A duplicate name is refused, imported or generated.
    let exists = "a key pair named 'k1' already exists in this project";
    let duplicates = [
        case("duplicate import", valid.clone(), CONFLICT, exists),
        case(
            "duplicate generate",
            json!({"name": "k1"}),
            CONFLICT,
            exists,
        ),
    ];
    cloud.refuse_all(&alice, "/v1/keypairs", &duplicates).await;
    // Another project may reuse the name; it cannot see alice's key pairs.
    ok_json(
        cloud.post(Some(&bob), "/v1/keypairs", &valid).await,
        StatusCode::CREATED,
    )
    .await;
    for path in [
        format!("/v1/keypairs/{}", id(&k1)),
        "/v1/keypairs/k2".into(),
    ] {
        let resp = cloud.get(&bob, &path).await;
        assert_error(
            &format!("bob GET {path}"),
            resp,
            NOT_FOUND,
            "key pair not found",
        )
        .await;
    }
    let path = format!("/v1/keypairs/{}", id(&k1));
    let resp = cloud.send(Method::DELETE, &path, Some(&bob)).await;
    assert_error("bob deletes alice's key pair", resp, NOT_FOUND, "not found").await;
    let listed = cloud.get_ok(&alice, "/v1/keypairs").await;
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
}

/// The handler accepts ECDSA keys (as OpenSSH does by default), so the key
/// parser must be able to read them.
#[tokio::test]
async fn ecdsa_public_keys_are_accepted() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let body = json!({"name": "k", "public_key": ECDSA});
    let resp = cloud.post(Some(&alice), "/v1/keypairs", &body).await;
    let key = ok_json(resp, StatusCode::CREATED).await;
    assert!(key["public_key"]
        .as_str()
        .unwrap()
        .starts_with("ecdsa-sha2-nistp256 AAAA"));
}

#[tokio::test]
async fn server_networks_keys_and_user_data_are_validated() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    // A /29: gateway .1, hosts .2 to .6.
    let net = json!({"name": "small", "cidr": "10.30.0.0/29"});
    let net = ok_json(
        cloud.post(Some(&alice), "/v1/networks", &net).await,
        StatusCode::CREATED,
    )
    .await;
    let body = json!({"name": "k1", "public_key": ED25519});
    ok_json(
        cloud.post(Some(&alice), "/v1/keypairs", &body).await,
        StatusCode::CREATED,
    )
    .await;
    let body = json!({"name": "bobnet", "cidr": "10.40.0.0/24"});
    ok_json(
        cloud.post(Some(&bob), "/v1/networks", &body).await,
        StatusCode::CREATED,
    )
    .await;
    let body = json!({"name": "bobkey", "public_key": ED25519});
    ok_json(
        cloud.post(Some(&bob), "/v1/keypairs", &body).await,
        StatusCode::CREATED,
    )
    .await;

    let valid = json!({"name": "s", "image": "disk", "flavor": "tiny"});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let nics = |n: Value| v("networks", n);
    let fixed = |ip: &str| nics(json!([{"network": "small", "fixed_ip": ip}]));
    let not_free = "is not a free host address of small (10.30.0.0/29, gateway 10.30.0.1)";
    let count = "networks must list 1 to 8 networks";
    let nine: Vec<Value> = (0..9).map(|_| json!({"network": "small"})).collect();
    let too_much = base64_encode(&vec![b'x'; 65_536]);
    #[rustfmt::skip]
    let cases = [
        case("no networks", nics(json!([])), BAD, count),
        case("nine networks", nics(json!(nine)), BAD, count),
        case("networks null-ish", nics(json!({})), INVALID, "networks"),
        case("network as a string", nics(json!(["small"])), INVALID, "networks"),
        case("unknown network", nics(json!([{"network": "nope"}])), BAD, "network 'nope' not found"),
        case("bob's network", nics(json!([{"network": "bobnet"}])), BAD, "network 'bobnet' not found"),
        case("nic unknown field", nics(json!([{"network": "small", "mac": "x"}])), INVALID, "unknown field `mac`"),
        case("fixed_ip outside", fixed("10.30.1.2"), BAD, not_free),
        case("fixed_ip = gateway", fixed("10.30.0.1"), BAD, not_free),
        case("fixed_ip = network", fixed("10.30.0.0"), BAD, not_free),
        case("fixed_ip = broadcast", fixed("10.30.0.7"), BAD, not_free),
        case("fixed_ip not an ip", fixed("ten"), INVALID, "fixed_ip"),
        case("fixed_ip IPv6", fixed("fd00::2"), INVALID, "fixed_ip"),
        case("fixed_ip twice", nics(json!([{"network": "small", "fixed_ip": "10.30.0.3"}, {"network": "small", "fixed_ip": "10.30.0.3"}])), CONFLICT, "address 10.30.0.3 is already in use on network 'small'"),
        case("unknown key", v("key_name", json!("nope")), BAD, "key pair 'nope' not found"),
        case("bob's key", v("key_name", json!("bobkey")), BAD, "key pair 'bobkey' not found"),
        case("user_data not base64", v("user_data", json!("#cloud-config!")), INVALID, "user_data must be base64"),
        case("user_data 64 KiB", v("user_data", json!(too_much)), INVALID, "at most 65535 are accepted"),
        case("user_data 5", v("user_data", json!(5)), INVALID, "user_data"),
        case("config_drive \"yes\"", v("config_drive", json!("yes")), INVALID, "config_drive"),
    ];
    cloud.refuse_all(&alice, "/v1/servers", &cases).await;

    // An address in use is a 409, and the failed request frees whatever it
    // had allocated: the first NIC's .3 is still free afterwards.
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/servers",
            &with(&fixed("10.30.0.2"), "name", json!("s2")),
        )
        .await;
    let s2 = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(s2["addresses"][0]["ip"], "10.30.0.2", "{s2}");
    let taken = "address 10.30.0.2 is already in use on network 'small'";
    let second_nic = nics(json!([
        {"network": "small", "fixed_ip": "10.30.0.3"},
        {"network": "small", "fixed_ip": "10.30.0.2"},
    ]));
    let conflicts = [
        case("address taken", fixed("10.30.0.2"), CONFLICT, taken),
        case("second NIC's address taken", second_nic, CONFLICT, taken),
    ];
    cloud.refuse_all(&alice, "/v1/servers", &conflicts).await;
    let body = with(&fixed("10.30.0.3"), "name", json!("s3"));
    let s3 = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(s3["addresses"][0]["ip"], "10.30.0.3", "{s3}");
    // Fill the network (.4 to .6), then it is full.
    for name in ["s4", "s5", "s6"] {
        let body = with(&nics(json!([{"network": "small"}])), "name", json!(name));
        ok_json(
            cloud.post(Some(&alice), "/v1/servers", &body).await,
            StatusCode::ACCEPTED,
        )
        .await;
    }
    let full = [case(
        "network full",
        nics(json!([{"network": "small"}])),
        CONFLICT,
        "network 'small' has no free address left",
    )];
    cloud.refuse_all(&alice, "/v1/servers", &full).await;
    // A network in use cannot be deleted.
    let before = cloud.snapshot(&alice).await;
    let resp = cloud
        .send(
            Method::DELETE,
            &format!("/v1/networks/{}", id(&net)),
            Some(&alice),
        )
        .await;
    assert_error(
        "delete a network in use",
        resp,
        CONFLICT,
        "still has 5 server port(s)",
    )
    .await;
    assert_eq!(cloud.snapshot(&alice).await, before);
}

/// Standard base64 with padding (for user data).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Isolation between projects
// ---------------------------------------------------------------------------

#[tokio::test]
async fn other_projects_get_404_not_403() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    cloud.register_host().await;
    let image = cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let body = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let resp = cloud.post(Some(&alice), "/v1/servers", &body).await;
    let server = ok_json(resp, StatusCode::ACCEPTED).await;
    let sid = id(&server).to_owned();
    let before = cloud.get_ok(&alice, &format!("/v1/servers/{sid}")).await;
    let random = uuid::Uuid::new_v4().to_string();

    let server_routes = |sid: &str| -> Vec<(Method, String)> {
        vec![
            (Method::GET, format!("/v1/servers/{sid}")),
            (Method::POST, format!("/v1/servers/{sid}/start")),
            (Method::POST, format!("/v1/servers/{sid}/stop")),
            (Method::POST, format!("/v1/servers/{sid}/reboot")),
            (Method::POST, format!("/v1/servers/{sid}/eject")),
            (Method::GET, format!("/v1/servers/{sid}/console-log")),
            (Method::DELETE, format!("/v1/servers/{sid}")),
        ]
    };
    // Bob, on alice's server: as if it did not exist, and it is untouched.
    for (method, path) in server_routes(&sid) {
        let resp = cloud.send(method.clone(), &path, Some(&bob)).await;
        let what = format!("bob {method} {path}");
        assert_error(&what, resp, NOT_FOUND, "server not found").await;
        let now = cloud.get_ok(&alice, &format!("/v1/servers/{sid}")).await;
        assert_eq!(now, before, "{what} changed alice's server");
    }
    // Anyone, on ids that are not UUIDs or belong to nothing.
    for bad_id in ["not-a-uuid", "123", "web", random.as_str()] {
        for (method, path) in server_routes(bad_id) {
            let resp = cloud.send(method.clone(), &path, Some(&alice)).await;
            assert_error(&format!("{method} {path}"), resp, NOT_FOUND, "not found").await;
        }
    }
    assert_eq!(cloud.get_ok(&bob, "/v1/servers").await, json!([]));
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, json!([before]));

    // Alice's private image: invisible to bob by id and by name.
    for reference in [id(&image), "disk"] {
        let resp = cloud.get(&bob, &format!("/v1/images/{reference}")).await;
        let what = format!("bob GET image {reference}");
        assert_error(&what, resp, NOT_FOUND, "image not found").await;
    }
    for reference in ["not-a-uuid", random.as_str()] {
        let resp = cloud.get(&alice, &format!("/v1/images/{reference}")).await;
        assert_error(reference, resp, NOT_FOUND, "image not found").await;
    }
    assert_eq!(cloud.get_ok(&bob, "/v1/images").await, json!([]));
    assert_eq!(cloud.get_ok(&alice, "/v1/images").await, json!([image]));
}

// ---------------------------------------------------------------------------
// Routing and the API description
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_in_json() {
    let cloud = Cloud::start().await;
    let some = uuid::Uuid::new_v4();
    // `/` itself is the web portal (crates/portal); other unknown paths are the API's.
    let not_found = [
        (Method::GET, "/nope".to_owned()),
        (Method::GET, "/v1".to_owned()),
        (Method::GET, "/v1/".to_owned()),
        (Method::GET, "/v1/nope".to_owned()),
        (Method::POST, "/v1/volumes".to_owned()),
        (Method::GET, "/v2/servers".to_owned()),
        (Method::GET, "/v1/servers/".to_owned()),
        (Method::GET, format!("/v1/servers/{some}/nope")),
        (Method::GET, format!("/v1/images/{some}/file/x")),
    ];
    for (method, path) in not_found {
        let resp = cloud.send(method.clone(), &path, None).await;
        let what = format!("{method} {path}");
        assert_error(&what, resp, NOT_FOUND, "no such API path").await;
    }
    let not_allowed = [
        (Method::DELETE, "/v1/flavors".to_owned()),
        (Method::PUT, "/v1/servers".to_owned()),
        (Method::GET, "/v1/tokens".to_owned()),
        (Method::GET, "/v1/users".to_owned()),
        (Method::POST, "/v1/openapi.json".to_owned()),
        (Method::GET, "/v1/agent/hosts".to_owned()),
        (Method::PUT, format!("/v1/servers/{some}")),
        (Method::GET, format!("/v1/servers/{some}/start")),
        (Method::POST, format!("/v1/images/{some}/file")),
        (Method::DELETE, format!("/v1/images/{some}")),
    ];
    for (method, path) in not_allowed {
        let resp = cloud.send(method.clone(), &path, None).await;
        let what = format!("{method} {path}");
        assert_error(&what, resp, NOT_ALLOWED, "not allowed").await;
    }
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// Every `.route(path, method(...))` in the router, read from its source, so
/// that a route added without an OpenAPI annotation fails the test below.
fn router_routes() -> Vec<(String, Vec<&'static str>)> {
    let source = include_str!("../src/http/mod.rs");
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(".route(") {
        rest = &rest[start + ".route(".len()..];
        let open = rest.find('"').expect("route path");
        let close = open + 1 + rest[open + 1..].find('"').expect("end of path");
        let path = rest[open + 1..close].to_owned();
        let handlers = &rest[close..rest.find(".route(").unwrap_or(rest.len())];
        // `get(`, `.post(`, `axum::routing::delete(`, but not `forget(`.
        let calls = |m: &str| {
            handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
                let before = handlers.as_bytes()[i - 1];
                !(before.is_ascii_alphanumeric() || before == b'_')
            })
        };
        let methods: Vec<&'static str> = METHODS.into_iter().filter(|m| calls(m)).collect();
        assert!(!methods.is_empty(), "no method found for route {path}");
        routes.push((path, methods));
    }
    routes
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let routes = router_routes();
    assert!(routes.len() >= 20, "parsed routes: {routes:?}");
    let cloud = Cloud::start().await;
    let resp = cloud.send(Method::GET, "/v1/openapi.json", None).await;
    let spec = ok_json(resp, StatusCode::OK).await;
    let paths = spec["paths"].as_object().expect("paths");

    let required = [
        ("/v1/users", "post"),
        ("/v1/tokens", "post"),
        ("/v1/tokens/current", "delete"),
        ("/v1/users/me", "get"),
        ("/v1/flavors", "get"),
        ("/v1/flavors", "post"),
        ("/v1/images", "get"),
        ("/v1/images", "post"),
        ("/v1/images/{id}", "get"),
        ("/v1/images/{id}/file", "put"),
        ("/v1/servers", "get"),
        ("/v1/servers", "post"),
        ("/v1/servers/{id}", "get"),
        ("/v1/servers/{id}", "delete"),
        ("/v1/servers/{id}/start", "post"),
        ("/v1/servers/{id}/stop", "post"),
        ("/v1/servers/{id}/reboot", "post"),
        ("/v1/servers/{id}/console-log", "get"),
    ];
    let mut expected: BTreeSet<(String, String)> = required
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    for (path, methods) in &routes {
        // The description need not describe itself.
        if path == "/openapi.json" {
            continue;
        }
        for m in methods {
            expected.insert((format!("/v1{path}"), m.to_string()));
        }
    }
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            let ops = ops.as_object().unwrap().keys();
            ops.filter(|k| METHODS.contains(&k.as_str()))
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
}

// ---------------------------------------------------------------------------
// The agent protocol
// ---------------------------------------------------------------------------

#[tokio::test]
async fn agent_endpoints_need_the_agent_token() {
    let cloud = Cloud::start().await;
    let admin = cloud.user("alice").await;
    let some = uuid::Uuid::new_v4();
    #[rustfmt::skip]
    let endpoints = [
        (Method::POST, "/v1/agent/hosts".to_owned(), Some(host_body())),
        (Method::GET, format!("/v1/agent/hosts/{some}/desired"), None),
        (Method::PUT, format!("/v1/agent/hosts/{some}/report"), Some(json!({"instances": []}))),
        (Method::GET, format!("/v1/agent/images/{some}/file"), None),
    ];
    let one_more = format!("{AGENT_TOKEN}0");
    let admin = admin.as_str();
    // (what, agent token header, bearer token)
    #[rustfmt::skip]
    let wrong: [(&str, Option<&str>, Option<&str>); 8] = [
        ("no agent token", None, None),
        ("empty agent token", Some(""), None),
        ("wrong agent token", Some("wrong"), None),
        ("agent token prefix", Some(&AGENT_TOKEN[..AGENT_TOKEN.len() - 1]), None),
        ("agent token plus one", Some(&one_more), None),
        ("user token as bearer", None, Some(admin)),
        ("agent token as bearer", None, Some(AGENT_TOKEN)),
        ("user token as agent token", Some(admin), None),
    ];
    for (what, agent_token, bearer) in wrong {
        for (method, path, body) in &endpoints {
            let mut r = cloud.req(method.clone(), path, bearer);
            if let Some(t) = agent_token {
                r = r.header(nubis_api::agent::AGENT_TOKEN_HEADER, t);
            }
            if let Some(b) = body {
                r = r.json(b);
            }
            let resp = r.send().await.unwrap();
            let what = format!("{what} on {method} {path}");
            assert_error(&what, resp, UNAUTHORIZED, "invalid agent token").await;
        }
    }
    assert_eq!(cloud.get_ok(admin, "/v1/hosts").await, json!([]));
    // Positive control: the right token registers the host.
    let registered = cloud.register_host().await;
    assert_eq!(registered["name"], "h1");
    assert_eq!(cloud.get_ok(admin, "/v1/hosts").await, json!([registered]));
}

// ---------------------------------------------------------------------------
// Usage records
// ---------------------------------------------------------------------------

/// Sets a controller clock (through its offset file) to about `to`.
fn set_clock(offset_file: &Path, to: &str) {
    let to = chrono::DateTime::parse_from_rfc3339(to).unwrap();
    let offset = (to.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    std::fs::write(offset_file, offset.to_string()).unwrap();
}

/// `(kind, name, size, unit)` of each record, and its quantity.
fn usage_rows(report: &Value) -> Vec<((String, String, String, String), f64)> {
    let s = |v: &Value| v.as_str().expect("a string").to_owned();
    report["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                ["kind", "name", "quantity", "resource", "size", "unit"],
                "{r}"
            );
            (
                (s(&r["kind"]), s(&r["name"]), s(&r["size"]), s(&r["unit"])),
                r["quantity"].as_f64().expect("a quantity"),
            )
        })
        .collect()
}

fn assert_usage(report: &Value, want: &[(&str, &str, &str, &str, f64)]) {
    let got = usage_rows(report);
    assert_eq!(got.len(), want.len(), "{report}");
    for (((kind, name, size, unit), q), w) in got.iter().zip(want) {
        assert_eq!(
            (kind.as_str(), name.as_str(), size.as_str(), unit.as_str()),
            (w.0, w.1, w.2, w.3),
            "{report}"
        );
        // The clock moves on in real time while the test runs.
        assert!((q - w.4).abs() < 0.02, "{} {name}: {q} != {}", w.0, w.4);
    }
}

#[tokio::test]
async fn usage_records_as_json_and_csv() {
    let clock_dir = tempfile::tempdir().unwrap();
    let offset = clock_dir.path().join("offset");
    set_clock(&offset, "2026-11-30T20:00:00Z");
    let clock = nubis_controller::clock::Clock::with_offset_file(offset.clone());
    let cloud = Cloud::start_with(Duration::from_secs(3600), clock).await;
    let alice = cloud.user("alice").await;
    let project = cloud.get_ok(&alice, "/v1/users/me").await["project"]
        .as_str()
        .unwrap()
        .to_owned();
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let body = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let resp = cloud.post(Some(&alice), "/v1/servers", &body).await;
    let server = ok_json(resp, StatusCode::ACCEPTED).await;
    let sid = id(&server).to_owned();
    let pool = json!({"name": "public", "first": "203.0.113.1", "last": "203.0.113.9"});
    let resp = cloud
        .post(Some(&alice), "/v1/floating-ip-pools", &pool)
        .await;
    ok_json(resp, StatusCode::CREATED).await;
    let resp = cloud
        .post(Some(&alice), "/v1/floating-ips", &json!({}))
        .await;
    let fip = ok_json(resp, StatusCode::CREATED).await;

    // Two hours later the server stops; two more and the address goes.
    set_clock(&offset, "2026-11-30T22:00:00Z");
    let resp = cloud
        .post(Some(&alice), &format!("/v1/servers/{sid}/stop"), &json!({}))
        .await;
    ok_json(resp, StatusCode::ACCEPTED).await;
    set_clock(&offset, "2026-12-01T00:30:00Z");
    let resp = cloud
        .send(
            Method::DELETE,
            &format!("/v1/floating-ips/{}", id(&fip)),
            Some(&alice),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // The default is JSON for the current period (December, half an hour in).
    let path = format!("/v1/projects/{project}/usage-records");
    let report = cloud.get_ok(&alice, &path).await;
    assert_eq!(report["project"], project.as_str());
    assert_eq!(
        report["period"],
        json!({"start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"})
    );
    assert_usage(
        &report,
        &[
            ("disk", "web", "1gib", "GiB-hours", 0.5),
            ("floating_ip", "203.0.113.1", "ipv4", "hours", 0.5),
        ],
    );
    let november = format!("{path}?period=2026-11&format=json");
    let report = cloud.get_ok(&alice, &november).await;
    assert_usage(
        &report,
        &[
            ("instance", "web", "1vcpu-128mib", "hours", 2.0),
            ("disk", "web", "1gib", "GiB-hours", 4.0),
            ("floating_ip", "203.0.113.1", "ipv4", "hours", 4.0),
        ],
    );
    assert_eq!(report["records"][0]["resource"], sid.as_str());
    assert_eq!(report["records"][2]["resource"], id(&fip));
    // `current` names the caller's project.
    let current = cloud
        .get_ok(&alice, "/v1/projects/current/usage-records?period=2026-11")
        .await;
    assert_eq!(usage_rows(&current).len(), 3);

    // CSV: a download with a header line and one line per record.
    let resp = cloud
        .get(&alice, &format!("{path}?period=2026-11&format=csv"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(
        header("content-disposition"),
        format!("attachment; filename=\"nubis-usage-{project}-2026-11.csv\"")
    );
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[0],
        "project,period,kind,resource,name,size,quantity,unit"
    );
    let fields: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(
        fields[..6],
        [
            project.as_str(),
            "2026-11",
            "instance",
            &sid,
            "web",
            "1vcpu-128mib"
        ],
        "{text}"
    );
    let hours: f64 = fields[6].parse().unwrap();
    assert!((hours - 2.0).abs() < 0.02, "{text}");
    assert!(lines[1].ends_with(",hours"), "{text}");
    assert!(
        lines[2].contains(",disk,") && lines[2].ends_with(",GiB-hours"),
        "{text}"
    );
    assert!(lines[3].contains(",floating_ip,"), "{text}");
    assert_eq!(lines[4], "", "{text}");
}

#[tokio::test]
async fn usage_records_reject_bad_periods_formats_and_other_projects() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await; // the first user: an admin
    let bob = cloud.user("bob").await;
    let me = |token: &str| {
        let token = token.to_owned();
        let cloud = &cloud;
        async move {
            cloud.get_ok(&token, "/v1/users/me").await["project"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (alices, bobs) = (me(&alice).await, me(&bob).await);
    let path = format!("/v1/projects/{bobs}/usage-records");
    for (query, mention) in [
        ("period=2026-13", "period must be YYYY-MM"),
        ("period=x", "period must be YYYY-MM"),
        ("period=", "period must be YYYY-MM"),
        ("format=xml", "format must be json or csv"),
        ("period=2026-11&format=CSV", "format must be json or csv"),
        ("format=json&format=csv", "duplicate field"),
    ] {
        let resp = cloud.get(&bob, &format!("{path}?{query}")).await;
        assert_error(query, resp, BAD, mention).await;
    }
    // Bob cannot see alice's project, nor anything that is no project.
    let random = uuid::Uuid::new_v4();
    for project in [alices.as_str(), "not-a-uuid", &random.to_string()] {
        let resp = cloud
            .get(&bob, &format!("/v1/projects/{project}/usage-records"))
            .await;
        assert_error(project, resp, NOT_FOUND, "project not found").await;
    }
    // Alice, an admin, sees bob's (empty) report, but no unknown project's.
    let report = cloud
        .get_ok(&alice, &format!("{path}?period=2026-11"))
        .await;
    assert_eq!(report["project"], bobs.as_str());
    assert_eq!(report["records"], json!([]));
    let resp = cloud
        .get(&alice, &format!("/v1/projects/{random}/usage-records"))
        .await;
    assert_error("unknown project", resp, NOT_FOUND, "project not found").await;
    // Without a token: 401.
    let resp = cloud.send(Method::GET, &path, None).await;
    assert_error("no token", resp, UNAUTHORIZED, "Authorization").await;
    // The report's shape is described.
    let resp = cloud.send(Method::GET, "/v1/openapi.json", None).await;
    let spec = ok_json(resp, StatusCode::OK).await;
    for schema in ["UsageReport", "UsageRecord", "UsageKind", "Period"] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
}

/// Sends `body` with `method` to `path` as `token`.
async fn send_json(
    cloud: &Cloud,
    method: Method,
    token: &str,
    path: &str,
    body: &Value,
) -> Response {
    cloud
        .req(method, path, Some(token))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rental_terms_reject_bad_input_and_change_nothing() {
    let cloud = Cloud::start().await;
    let admin = cloud.user("root").await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; MIB])
        .await;
    let valid = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let rate = "average_mbit must be between 1 and 100000";
    let quota = "monthly_gib must be between";
    #[rustfmt::skip]
    let create_cases = vec![
        case("rate 0", v("bandwidth", json!({"inbound": {"average_mbit": 0}})), INVALID, rate),
        case("rate -5", v("bandwidth", json!({"outbound": {"average_mbit": -5}})), INVALID, rate),
        case("rate 10^6", v("bandwidth", json!({"outbound": {"average_mbit": 1_000_000}})), INVALID, rate),
        case("peak below average", v("bandwidth", json!({"inbound": {"average_mbit": 10, "peak_mbit": 5}})), INVALID, "peak_mbit"),
        case("burst 0", v("bandwidth", json!({"inbound": {"average_mbit": 10, "burst_kib": 0}})), INVALID, "burst_kib"),
        case("unknown direction", v("bandwidth", json!({"up": {"average_mbit": 10}})), INVALID, "unknown field"),
        case("quota 0", v("traffic_quota", json!({"monthly_gib": 0})), INVALID, quota),
        case("quota -1", v("traffic_quota", json!({"monthly_gib": -1})), INVALID, quota),
        case("quota 10^12", v("traffic_quota", json!({"monthly_gib": 1e12})), INVALID, quota),
        case("quota policy", v("traffic_quota", json!({"monthly_gib": 1, "policy": "explode"})), INVALID, "policy"),
        case("lease 0 s", v("lease", json!({"duration_seconds": 0})), INVALID, "duration_seconds"),
        case("lease -60 s", v("lease", json!({"duration_seconds": -60})), INVALID, "duration_seconds"),
        case("lease 100 years", v("lease", json!({"duration_seconds": 3_200_000_000i64})), INVALID, "duration_seconds"),
        case("lease in the past", v("lease", json!({"expires_at": "2001-01-01T00:00:00Z"})), BAD, "in the past"),
        case("lease both", v("lease", json!({"duration_seconds": 60, "expires_at": "2099-01-01T00:00:00Z"})), INVALID, "not both"),
        case("lease empty", v("lease", json!({})), INVALID, "duration_seconds or expires_at"),
    ];
    cloud.refuse_all(&alice, "/v1/servers", &create_cases).await;

    let server = ok_json(
        cloud
            .post(
                Some(&alice),
                "/v1/servers",
                &v("bandwidth", json!({"inbound": {"average_mbit": 10}})),
            )
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(server["bandwidth"]["inbound"]["average_mbit"], 10);
    let path = format!("/v1/servers/{}", id(&server));
    let before = cloud.get_ok(&alice, &path).await;
    let strip = |mut s: Value| {
        // Observed fields may change on their own; the terms may not.
        for k in ["status", "launched_at", "fault"] {
            s.as_object_mut().unwrap().remove(k);
        }
        s
    };
    #[rustfmt::skip]
    let patch_cases = [
        ("rate 0", json!({"bandwidth": {"inbound": {"average_mbit": 0}}}), INVALID, rate),
        ("rate -1", json!({"bandwidth": {"outbound": {"average_mbit": -1}}}), INVALID, rate),
        ("quota absurd", json!({"traffic_quota": {"monthly_gib": 1e300}}), INVALID, quota),
        ("quota negative", json!({"traffic_quota": {"monthly_gib": -3}}), INVALID, quota),
        ("rename", json!({"name": "other"}), INVALID, "unknown field"),
        ("nothing", json!({}), BAD, "nothing to change"),
    ];
    for (what, body, want, mention) in patch_cases {
        let resp = send_json(&cloud, Method::PATCH, &alice, &path, &body).await;
        assert_error(what, resp, want, mention).await;
        assert_eq!(
            strip(cloud.get_ok(&alice, &path).await),
            strip(before.clone()),
            "{what}"
        );
    }
    // Another project's server is not there; bob cannot change it.
    let body = json!({"bandwidth": {}});
    let resp = send_json(&cloud, Method::PATCH, &bob, &path, &body).await;
    assert_error("bob's patch", resp, NOT_FOUND, "server").await;

    let lease = format!("{path}/lease");
    #[rustfmt::skip]
    let lease_cases = [
        ("past", &alice, json!({"term": {"expires_at": "2001-01-01T00:00:00Z"}}), BAD, "in the past"),
        ("too soon", &alice, json!({"term": {"duration_seconds": 5}}), INVALID, "duration_seconds"),
        ("exempt by a user", &alice, json!({"exempt": true}), FORBIDDEN, "admin"),
        ("nothing", &alice, json!({}), BAD, "nothing to change"),
        ("other project", &bob, json!({"term": {"duration_seconds": 3600}}), NOT_FOUND, "server"),
    ];
    for (what, token, body, want, mention) in lease_cases {
        let resp = send_json(&cloud, Method::POST, token, &lease, &body).await;
        assert_error(what, resp, want, mention).await;
        assert_eq!(
            strip(cloud.get_ok(&alice, &path).await),
            strip(before.clone()),
            "{what}"
        );
    }
    // An admin may exempt and extend anyone's server.
    let body = json!({"exempt": true, "term": {"duration_seconds": 7200}});
    let s = ok_json(
        send_json(&cloud, Method::POST, &admin, &lease, &body).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(s["lease"]["exempt"], true, "{s}");

    // Usage: bad periods, other projects.
    for bad in ["2026-13", "x", "2026-1"] {
        let resp = cloud
            .get(&alice, &format!("{path}/usage?period={bad}"))
            .await;
        assert_error(bad, resp, BAD, "period").await;
    }
    let resp = cloud.get(&bob, &format!("{path}/usage")).await;
    assert_error("bob's usage", resp, NOT_FOUND, "server").await;
    let alice_project = server["project"].as_str().unwrap();
    let resp = cloud
        .get(&bob, &format!("/v1/projects/{alice_project}/usage"))
        .await;
    assert_error("bob reads alice's project", resp, NOT_FOUND, "project").await;
    let usage = cloud.get_ok(&alice, &format!("{path}/usage")).await;
    assert_eq!(usage["total_bytes"], 0);
    let events = cloud.get_ok(&alice, &format!("{path}/events")).await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["lease_exempted", "lease_renewed"], "{events}");
}

// ---------------------------------------------------------------------------
// Project quotas
// ---------------------------------------------------------------------------

const QUOTA_EXCEEDED: Want = (StatusCode::FORBIDDEN, "quota_exceeded");

impl Cloud {
    /// The project of the user holding `token`.
    async fn project_of(&self, token: &str) -> String {
        let me = self.get_ok(token, "/v1/users/me").await;
        me["project"].as_str().expect("a project").to_owned()
    }

    async fn put_quotas(&self, token: &str, project: &str, body: &Value) -> Response {
        self.req(
            Method::PUT,
            &format!("/v1/projects/{project}/quotas"),
            Some(token),
        )
        .json(body)
        .send()
        .await
        .unwrap()
    }

    async fn quotas(&self, token: &str, project: &str) -> Value {
        self.get_ok(token, &format!("/v1/projects/{project}/quotas"))
            .await
    }
}

#[tokio::test]
async fn quotas_are_shown_to_their_project_and_set_by_admins() {
    let cloud = Cloud::start().await;
    let admin = cloud.user("root").await; // the first user is an admin
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let (ap, bp) = (cloud.project_of(&alice).await, cloud.project_of(&bob).await);

    let defaults = json!({"servers": 10, "vcpus": 20, "memory_mib": 51200, "disk_gib": 1000,
        "floating_ips": 10, "networks": 10});
    let zero = json!({"servers": 0, "vcpus": 0, "memory_mib": 0, "disk_gib": 0,
        "floating_ips": 0, "networks": 0});
    let before = cloud.quotas(&alice, &ap).await;
    assert_eq!(
        before,
        json!({"project": ap, "limits": defaults, "in_use": zero})
    );
    assert_eq!(
        cloud.quotas(&admin, &ap).await,
        before,
        "admins see any project's"
    );

    // Another project's quotas, or no project's, are not found.
    let random = uuid::Uuid::new_v4().to_string();
    for (who, token, project) in [
        ("bob on alice's", &bob, ap.as_str()),
        ("alice on a random id", &alice, random.as_str()),
        ("admin on a random id", &admin, random.as_str()),
        ("alice on a bad id", &alice, "not-a-uuid"),
    ] {
        let resp = cloud
            .get(token, &format!("/v1/projects/{project}/quotas"))
            .await;
        assert_error(who, resp, NOT_FOUND, "not found").await;
    }

    // Only admins set them, on their own project too.
    let body = json!({"servers": 1});
    for (who, token, project) in [
        ("alice on her own", &alice, ap.as_str()),
        ("bob on alice's", &bob, ap.as_str()),
        ("bob on a random id", &bob, random.as_str()),
    ] {
        let resp = cloud.put_quotas(token, project, &body).await;
        assert_error(who, resp, FORBIDDEN, "admin").await;
    }
    assert_eq!(cloud.quotas(&alice, &ap).await, before);
    let resp = cloud.put_quotas(&admin, &random, &body).await;
    assert_error("admin on a random id", resp, NOT_FOUND, "project not found").await;

    // Positive control: an admin sets some limits; the others stay.
    let resp = cloud
        .put_quotas(&admin, &ap, &json!({"servers": 1, "networks": 0}))
        .await;
    let set = ok_json(resp, StatusCode::OK).await;
    assert_eq!(set["limits"]["servers"], 1);
    assert_eq!(set["limits"]["networks"], 0);
    assert_eq!(set["limits"]["vcpus"], 20);
    assert_eq!(cloud.quotas(&alice, &ap).await, set);
    assert_eq!(cloud.quotas(&bob, &bp).await["limits"], defaults);
}

#[tokio::test]
async fn quota_updates_reject_bad_bodies_and_change_nothing() {
    let cloud = Cloud::start().await;
    let admin = cloud.user("root").await;
    let alice = cloud.user("alice").await;
    let ap = cloud.project_of(&alice).await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    for name in ["a", "b"] {
        let body = json!({"name": name, "image": "disk", "flavor": "tiny"});
        let resp = cloud.post(Some(&alice), "/v1/servers", &body).await;
        ok_json(resp, StatusCode::ACCEPTED).await;
    }
    let before = cloud.quotas(&admin, &ap).await;
    assert_eq!(before["in_use"]["servers"], 2);

    let range = "quota limits must be between 0 and 1099511627776";
    #[rustfmt::skip]
    let cases = [
        case("negative", json!({"servers": -1}), INVALID, range),
        case("i64::MIN", json!({"vcpus": i64::MIN}), INVALID, range),
        case("absurd", json!({"disk_gib": 99_999_999_999_999_999u64}), INVALID, range),
        case("2^40 + 1", json!({"memory_mib": (1u64 << 40) + 1}), INVALID, range),
        case("u64::MAX", json!({"networks": u64::MAX}), INVALID, "networks"),
        case("1.5", json!({"servers": 1.5}), INVALID, "servers"),
        case("1e3", json!({"servers": 1e3}), INVALID, "servers"),
        case("a string", json!({"servers": "many"}), INVALID, "servers"),
        case("a numeric string", json!({"servers": "3"}), INVALID, "servers"),
        case("null", json!({"servers": null}), INVALID, "servers"),
        case("true", json!({"floating_ips": true}), INVALID, "floating_ips"),
        case("unknown field", json!({"cpus": 2}), INVALID, "unknown field `cpus`"),
        case("good beside unknown", json!({"servers": 5, "ram": 1}), INVALID, "ram"),
        case("good beside bad", json!({"servers": 5, "vcpus": -2}), INVALID, range),
        case("an array", json!([{"servers": 5}]), INVALID, "invalid type"),
        case("below usage", json!({"servers": 1}), CONFLICT,
            "cannot set the servers quota to 1: the project already holds 2"),
        case("below usage beside good", json!({"vcpus": 100, "servers": 0}), CONFLICT, "servers"),
        case("vcpus below usage", json!({"vcpus": 1}), CONFLICT, "vcpus"),
    ];
    for c in &cases {
        let resp = cloud.put_quotas(&admin, &ap, &c.body).await;
        assert_error(&c.what, resp, c.want, c.mention).await;
        assert_eq!(
            cloud.quotas(&admin, &ap).await,
            before,
            "{}: changed",
            c.what
        );
    }
    // Malformed JSON and missing content types.
    let path = format!("/v1/projects/{ap}/quotas");
    let resp = cloud
        .req(Method::PUT, &path, Some(&admin))
        .header(CONTENT_TYPE, "application/json")
        .body("{\"servers\": ")
        .send()
        .await
        .unwrap();
    assert_error("malformed", resp, BAD, "malformed JSON").await;
    let resp = cloud
        .req(Method::PUT, &path, Some(&admin))
        .body("{\"servers\": 5}")
        .send()
        .await
        .unwrap();
    assert_error("no content type", resp, UNSUPPORTED, "Content-Type").await;
    assert_eq!(cloud.quotas(&admin, &ap).await, before);

    // Positive control: exactly the usage, and the largest limit, are fine.
    let resp = cloud
        .put_quotas(&admin, &ap, &json!({"servers": 2, "disk_gib": 1u64 << 40}))
        .await;
    let q = ok_json(resp, StatusCode::OK).await;
    assert_eq!(q["limits"]["servers"], 2);
    assert_eq!(q["limits"]["disk_gib"], 1u64 << 40);
}

#[tokio::test]
async fn creates_beyond_the_quota_are_403_and_create_nothing() {
    let cloud = Cloud::start().await;
    let admin = cloud.user("root").await;
    let alice = cloud.user("alice").await;
    let ap = cloud.project_of(&alice).await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let pool = json!({"name": "public", "first": "203.0.113.1", "last": "203.0.113.50"});
    let resp = cloud
        .post(Some(&admin), "/v1/floating-ip-pools", &pool)
        .await;
    ok_json(resp, StatusCode::CREATED).await;
    let limits = json!({"servers": 1, "vcpus": 2, "floating_ips": 1, "networks": 1});
    ok_json(cloud.put_quotas(&admin, &ap, &limits).await, StatusCode::OK).await;

    let server = |name: &str, vcpus: u64| json!({"name": name, "image": "disk", "vcpus": vcpus, "memory_mib": 128, "disk_gib": 1});
    let before = cloud.snapshot(&alice).await;
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &server("big", 3))
        .await;
    let message = assert_error("3 vCPUs of 2", resp, QUOTA_EXCEEDED, "vcpus").await;
    assert_eq!(
        message,
        "quota exceeded for vcpus: limit 2, in use 0, requested 3"
    );
    assert_eq!(cloud.snapshot(&alice).await, before);
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &server("web", 2))
        .await;
    ok_json(resp, StatusCode::ACCEPTED).await;
    let before = cloud.snapshot(&alice).await;
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &server("two", 1))
        .await;
    assert_error(
        "a second server",
        resp,
        QUOTA_EXCEEDED,
        "quota exceeded for servers: limit 1, in use 1, requested 1",
    )
    .await;

    // Networks: the default one (made by listing) does not count.
    let net = |name: &str, cidr: &str| json!({"name": name, "cidr": cidr});
    let resp = cloud
        .post(Some(&alice), "/v1/networks", &net("lan", "192.168.1.0/24"))
        .await;
    ok_json(resp, StatusCode::CREATED).await;
    let before_nets = cloud.get_ok(&alice, "/v1/networks").await;
    assert_eq!(before_nets.as_array().unwrap().len(), 2, "default and lan");
    let resp = cloud
        .post(Some(&alice), "/v1/networks", &net("lan2", "192.168.2.0/24"))
        .await;
    assert_error("a second network", resp, QUOTA_EXCEEDED, "networks").await;
    assert_eq!(cloud.get_ok(&alice, "/v1/networks").await, before_nets);

    // Floating IPs.
    let resp = cloud
        .post(Some(&alice), "/v1/floating-ips", &json!({}))
        .await;
    ok_json(resp, StatusCode::CREATED).await;
    let fips = cloud.get_ok(&alice, "/v1/floating-ips").await;
    let resp = cloud
        .post(Some(&alice), "/v1/floating-ips", &json!({}))
        .await;
    assert_error("a second floating IP", resp, QUOTA_EXCEEDED, "floating_ips").await;
    assert_eq!(cloud.get_ok(&alice, "/v1/floating-ips").await, fips);

    let q = cloud.quotas(&alice, &ap).await;
    assert_eq!(
        q["in_use"],
        json!({"servers": 1, "vcpus": 2, "memory_mib": 128, "disk_gib": 1,
            "floating_ips": 1, "networks": 1})
    );
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, before[0]);
}

#[tokio::test]
async fn concurrent_http_creates_never_exceed_the_quota() {
    let cloud = Cloud::start().await;
    let admin = cloud.user("root").await;
    let alice = cloud.user("alice").await;
    let ap = cloud.project_of(&alice).await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    // Make the default network first, so the race is only about servers.
    cloud.get_ok(&alice, "/v1/networks").await;
    ok_json(
        cloud.put_quotas(&admin, &ap, &json!({"servers": 3})).await,
        StatusCode::OK,
    )
    .await;
    let bodies: Vec<Value> = (0..12)
        .map(|i| {
            json!({"name": format!("s{i}"), "image": "disk", "vcpus": 1, "memory_mib": 64,
                "disk_gib": 1})
        })
        .collect();
    let responses = futures_util::future::join_all(
        bodies
            .iter()
            .map(|b| cloud.post(Some(&alice), "/v1/servers", b)),
    )
    .await;
    let mut created = 0;
    for (body, resp) in bodies.iter().zip(responses) {
        if resp.status() == StatusCode::ACCEPTED {
            created += 1;
        } else {
            let what = format!("creating {}", body["name"]);
            assert_error(&what, resp, QUOTA_EXCEEDED, "quota exceeded for servers").await;
        }
    }
    assert_eq!(created, 3);
    let servers = cloud.get_ok(&alice, "/v1/servers").await;
    assert_eq!(servers.as_array().unwrap().len(), 3);
    assert_eq!(cloud.quotas(&alice, &ap).await["in_use"]["servers"], 3);
}

// ---------------------------------------------------------------------------
// Installing from an ISO
// ---------------------------------------------------------------------------

/// The smallest bytes our parser takes for ISO 9660: "CD001" in the first
/// volume descriptor (sector 16 of 2 KiB sectors).
fn iso_bytes() -> Vec<u8> {
    let mut v = vec![0u8; 0x9000];
    v[0x8000] = 1; // primary volume descriptor
    v[0x8001..0x8006].copy_from_slice(b"CD001");
    v
}

/// The instance spec the server's host is told to run.
async fn desired_spec(cloud: &Cloud, host: &str, server: &str) -> Value {
    let resp = cloud
        .req(
            Method::GET,
            &format!("/v1/agent/hosts/{host}/desired"),
            None,
        )
        .header(nubis_api::agent::AGENT_TOKEN_HEADER, AGENT_TOKEN)
        .send()
        .await
        .unwrap();
    let desired = ok_json(resp, StatusCode::OK).await;
    desired["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == server)
        .unwrap_or_else(|| panic!("{server} not in {desired}"))
        .clone()
}

#[tokio::test]
async fn iso_uploads_are_checked_and_iso_servers_eject_once() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let host = cloud.register_host().await;
    let host = id(&host).to_owned();

    // Bytes that are not ISO 9660 are refused; the image stays queued.
    let iso = cloud
        .create_image(&alice, image_record("inst", "iso"))
        .await;
    let iso_id = id(&iso).to_owned();
    #[rustfmt::skip]
    let cases = [
        ("iso with raw zeros", vec![0u8; MIB], "declared iso but its bytes are raw"),
        ("iso with qcow2 bytes", qcow2(GIB, None), "declared iso but its bytes are qcow2"),
        ("iso with CD001 at the wrong place", {
            let mut v = iso_bytes(); v[0x8001..0x8006].fill(0); v[0x8002..0x8007].copy_from_slice(b"CD001"); v
        }, "declared iso but its bytes are raw"),
        ("iso empty", vec![], "empty"),
    ];
    for (what, bytes, why) in cases {
        let resp = cloud.upload(&alice, &iso_id, bytes).await;
        assert_error(what, resp, BAD, why).await;
        let now = cloud.image(&alice, &iso_id).await;
        assert_eq!(now["status"], "queued", "{what}: {now}");
        assert!(files_in(&cloud.images_dir()).is_empty(), "{what}");
    }
    // An ISO takes no kernel, initrd or cmdline.
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/images",
            &with(&image_record("k", "iso"), "cmdline", json!("console=ttyS0")),
        )
        .await;
    assert_error("iso with cmdline", resp, BAD, "belong on a qcow2 or raw").await;
    // Real ISO bytes are accepted.
    let image = ok_json(
        cloud.upload(&alice, &iso_id, iso_bytes()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["format"], "iso");

    // A server from the ISO: a blank disk of any size, the ISO in the drive.
    let body =
        json!({"name": "inst", "image": "inst", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let server = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let sid = id(&server).to_owned();
    assert_eq!(server["cdrom_attached"], true, "{server}");
    let spec = desired_spec(&cloud, &host, &sid).await;
    assert_eq!(spec["disk_image"]["format"], "iso");
    assert_eq!(spec["cdrom"]["id"], iso_id.as_str(), "{spec}");
    assert_eq!(spec["cdrom"]["format"], "iso");

    // A server from a disk image has no drive to eject.
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let body = json!({"name": "plain", "image": "disk", "flavor": "tiny"});
    let plain = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(plain["cdrom_attached"], false);
    assert_eq!(
        desired_spec(&cloud, &host, id(&plain)).await["cdrom"],
        Value::Null
    );
    let path = format!("/v1/servers/{}/eject", id(&plain));
    let before = cloud
        .get_ok(&alice, &format!("/v1/servers/{}", id(&plain)))
        .await;
    let resp = cloud.post(Some(&alice), &path, &json!({})).await;
    assert_error("eject without ISO", resp, CONFLICT, "no ISO").await;
    let now = cloud
        .get_ok(&alice, &format!("/v1/servers/{}", id(&plain)))
        .await;
    assert_eq!(now, before);

    // Another project's server: 404, and the ISO stays in.
    let path = format!("/v1/servers/{sid}/eject");
    let resp = cloud.post(Some(&bob), &path, &json!({})).await;
    assert_error("bob ejects", resp, NOT_FOUND, "server not found").await;
    assert_eq!(
        cloud.get_ok(&alice, &format!("/v1/servers/{sid}")).await["cdrom_attached"],
        true
    );

    // Eject: the drive is empty in the spec; a second eject is a 409.
    let resp = cloud.post(Some(&alice), &path, &json!({})).await;
    let ejected = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(ejected["cdrom_attached"], false, "{ejected}");
    let spec = desired_spec(&cloud, &host, &sid).await;
    assert_eq!(spec["cdrom"], Value::Null, "{spec}");
    assert_eq!(spec["disk_image"]["format"], "iso", "still a blank disk");
    let resp = cloud.post(Some(&alice), &path, &json!({})).await;
    assert_error("second eject", resp, CONFLICT, "no ISO").await;

    // A server being deleted cannot be ejected.
    let body =
        json!({"name": "inst2", "image": "inst", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let second = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let resp = cloud
        .send(
            Method::DELETE,
            &format!("/v1/servers/{}", id(&second)),
            Some(&alice),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let path = format!("/v1/servers/{}/eject", id(&second));
    let resp = cloud.post(Some(&alice), &path, &json!({})).await;
    assert_error("eject while deleting", resp, CONFLICT, "being deleted").await;
}
