//! A headless Chromium driven over WebDriver (`chromedriver`), with a tiny
//! client of our own over reqwest: enough for the portal tests.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `chromedriver` plus one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone, Debug)]
pub struct Element(pub String);

impl Browser {
    /// Starts chromedriver on `port` and a headless Chromium of `width` x `height`.
    pub async fn start(port: u16, width: u32, height: u32) -> Self {
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver (apt-get install chromium chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let status = format!("{base}/status");
        super::wait_for("chromedriver", Duration::from_secs(20), || {
            let http = http.clone();
            let status = status.clone();
            async move { http.get(&status).send().await.ok() }
        })
        .await;
        let profile = tempfile::Builder::new()
            .prefix("nubis-chromium-")
            .tempdir()
            .expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ]
            }
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("new session answer");
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {resp}"))
            .to_owned();
        let b = Self {
            driver,
            base,
            session,
            http,
            _profile: profile,
        };
        b.set_size(width, height).await;
        b
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, &url);
        req = req.json(&body.unwrap_or_else(|| json!({})));
        let resp: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver answer");
        resp["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let resp: Value = self
            .http
            .get(&url)
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver answer");
        resp["value"].clone()
    }

    /// Ends the browser session (Chromium exits).
    pub async fn quit(&self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(&url).send().await;
    }

    pub async fn set_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or("").to_owned()
    }

    /// The first element matching a CSS selector, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        if std::env::var_os("NUBIS_WD_DEBUG").is_some() && v[ELEMENT].is_null() {
            eprintln!("find {css}: {v}");
        }
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> Element {
        let what = format!("element {css}");
        super::wait_for(&what, Duration::from_secs(10), || self.try_find(css)).await
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    /// Types into a field after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/clear", e.0), json!({}))
            .await;
        self.post(&format!("/element/{}/value", e.0), json!({"text": text}))
            .await;
    }

    /// Sends keys to an element (e.g. a file path to a file input).
    pub async fn send_keys(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/value", e.0), json!({"text": text}))
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{}/text", e.0))
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The whole page's visible text.
    pub async fn body_text(&self) -> String {
        self.text("body").await
    }

    /// Runs a script in the page and returns its result.
    pub async fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Waits until the page's text contains `needle`.
    pub async fn wait_text(&self, needle: &str, limit: Duration) {
        let what = format!("the page to show {needle:?}");
        super::wait_for(&what, limit, || async {
            self.body_text().await.contains(needle).then_some(())
        })
        .await
    }

    /// A cookie's value (WebDriver sees HttpOnly cookies too).
    pub async fn get_cookie(&self, name: &str) -> Option<String> {
        let v = self.get(&format!("/cookie/{name}")).await;
        v["value"].as_str().map(str::to_owned)
    }

    /// Saves a PNG screenshot to `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let v = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot data"))
            .expect("screenshot base64");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshots dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writing screenshot");
        path
    }

    /// The element reference in the JSON form scripts take as an argument.
    pub fn arg(e: &Element) -> Value {
        json!({ ELEMENT: e.0 })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium runs with our own fresh profile dir: end exactly those
        // processes, then chromedriver.
        super::kill_processes_mentioning(&self._profile.path().to_string_lossy());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
