//! An API session of the end-to-end tests: the controller's URL, a bearer
//! token once logged in, and the calls every harness makes with them.
//! `cloud::Cloud` and `multihost::MultiHost` each hold one (and deref to
//! it, so `cloud.call(...)` and `cloud.token` read as before).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A client of one controller's API, logged in once `login` was called.
pub struct ApiSession {
    /// The API's base URL (`http://127.0.0.1:8780`).
    pub url: String,
    /// The bearer token used by `request` and `call`.
    pub token: Option<String>,
    http: reqwest::Client,
}

impl ApiSession {
    /// A session with the API at `url`, not logged in.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            token: None,
            http: reqwest::Client::new(),
        }
    }

    /// The HTTP client (for calls that carry no token).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request to `path`, with the token when logged in.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends and returns status + JSON body (Null when not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("API request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Logs in as `name`; the token is used from then on.
    pub async fn login(&mut self, name: &str, password: &str) {
        let creds = json!({"name": name, "password": password});
        let (s, b) = self.call(Method::POST, "/v1/tokens", Some(creds)).await;
        assert_eq!(s, StatusCode::CREATED, "login: {b}");
        self.token = Some(b["token"].as_str().expect("token").to_owned());
    }

    /// The CLI's config dir under `dir`, holding the current login token.
    pub fn cli_config_in(&self, dir: &Path) -> PathBuf {
        let config = dir.join("cli");
        std::fs::create_dir_all(&config).expect("cli config dir");
        if let Some(t) = &self.token {
            std::fs::write(config.join("token"), t).expect("token file");
        }
        config
    }

    /// Generates a key pair `name`; returns the path of its private key
    /// (0600), written in `dir`.
    pub async fn keypair_in(&self, name: &str, dir: &Path) -> PathBuf {
        let (s, kp) = self
            .call(Method::POST, "/v1/keypairs", Some(json!({"name": name})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{kp}");
        let key = dir.join(format!("{name}.pem"));
        std::fs::write(&key, kp["private_key"].as_str().expect("private key")).expect("key file");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        key
    }

    /// Creates a server (must be accepted); returns its id and the answer.
    pub async fn create_server(&self, body: Value) -> (String, Value) {
        let (s, server) = self.call(Method::POST, "/v1/servers", Some(body)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{server}");
        let id = server["id"].as_str().expect("server id").to_owned();
        (id, server)
    }

    /// Polls a server until its status is `want`; fails on `error`, with
    /// `log()` (the controller's log) in the message.
    pub async fn wait_status_or_fail(
        &self,
        id: &str,
        want: &str,
        limit: Duration,
        log: impl Fn() -> String,
    ) -> Value {
        let what = format!("server {id} to be {want}");
        super::wait_for(&what, limit, || async {
            let (s, b) = self
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            assert!(s.is_success(), "GET server: {s} {b}");
            assert_ne!(b["status"], "error", "server failed: {b}\n{}", log());
            (b["status"] == want).then_some(b)
        })
        .await
    }

    /// The server's console log; `None` when the API refuses it (e.g. while
    /// the server is between hosts).
    pub async fn try_console_log(&self, id: &str) -> Option<String> {
        let resp = self
            .request(Method::GET, &format!("/v1/servers/{id}/console-log"))
            .send()
            .await
            .expect("console-log");
        if !resp.status().is_success() {
            return None;
        }
        Some(resp.text().await.unwrap_or_default())
    }

    /// Waits until the console log shows `needle`.
    pub async fn wait_console(&self, id: &str, needle: &str, limit: Duration) {
        let what = format!("'{needle}' on the console of {id}");
        super::wait_for(&what, limit, || async {
            self.try_console_log(id)
                .await
                .is_some_and(|log| log.contains(needle))
                .then_some(())
        })
        .await
    }
}
