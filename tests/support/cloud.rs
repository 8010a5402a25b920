//! A real `nubis up` process and an API client for it.

use super::api::ApiSession;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `nubis up` started by the test; killed (with every QEMU it started)
/// on drop. Must be created inside the test's network namespace.
pub struct Cloud {
    pub data_dir: tempfile::TempDir,
    child: Option<Child>,
    /// The API session (`url`, `token`, `call`...): see `Deref`.
    api: ApiSession,
    /// Extra `nubis up` arguments, kept for restarts.
    extra_args: Vec<String>,
}

pub fn nubis_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nubis")
}

impl Cloud {
    /// Starts `nubis up` on an empty data dir and waits for its API.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Like `start`, with extra `nubis up` arguments (also used on restarts).
    pub async fn start_with(extra_args: &[&str]) -> Self {
        Self::start_under(&std::env::temp_dir(), extra_args).await
    }

    /// Like `start_with`, with the data dir made inside `parent` (such as
    /// a private directory, as root's home is).
    pub async fn start_under(parent: &Path, extra_args: &[&str]) -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("nubis-e2e-")
            .tempdir_in(parent)
            .expect("temp dir");
        let mut cloud = Self {
            data_dir,
            child: None,
            api: ApiSession::new("http://127.0.0.1:8780"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        cloud.spawn().await;
        cloud
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    /// Starts (again) `nubis up` on the same data dir.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_path().join("up.log"))
            .expect("log file");
        let child = Command::new(nubis_bin())
            .args(["up", "--data-dir"])
            .arg(self.data_path())
            .args(["--accel", "tcg", "--stop-timeout", "20"])
            .args(&self.extra_args)
            .env("NUBIS_LOG", "info,nubis=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting nubis up");
        self.child = Some(child);
        let http = self.api.http().clone();
        let url = format!("{}/v1/openapi.json", self.url);
        super::wait_for("the API to answer", Duration::from_secs(30), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
    }

    /// `kill -9` of `nubis up`, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The `nubis up` log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_path().join("up.log")).unwrap_or_default()
    }

    /// Registers `name` and logs in as it; the token is used from then on.
    pub async fn register_and_login(&mut self, name: &str, password: &str) {
        let creds = json!({"name": name, "password": password});
        let (s, b) = self
            .call(Method::POST, "/v1/users", Some(creds.clone()))
            .await;
        assert_eq!(s, StatusCode::CREATED, "register: {b}");
        self.login(name, password).await;
    }

    /// Makes the admin `name` as an operator does (`nubis admin create-user
    /// --admin` on this cloud's store: registering never makes an admin)
    /// and logs in as it; the token is used from then on.
    pub async fn create_admin_and_login(&mut self, name: &str, password: &str) {
        let data_dir = self.data_path().to_string_lossy().into_owned();
        admin_create_user(&["--data-dir", &data_dir], name, password, true);
        self.login(name, password).await;
    }

    /// Runs the `nubis` CLI against this cloud as the logged-in user.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        run_cli(&self.url, &self.cli_config(), args)
    }

    /// The CLI's config dir for this cloud, holding the login token.
    fn cli_config(&self) -> PathBuf {
        self.api.cli_config_in(self.data_path())
    }

    /// Uploads the tiny guest as `tiny` (with `tiny-kernel`, `tiny-initrd`)
    /// through the CLI, as a user would.
    pub fn upload_tiny_image(&self) {
        upload_tiny_image_to(&self.url, &self.cli_config());
    }

    /// Registers the tiny guest's disk as image `name` (booting the already
    /// uploaded `tiny-kernel` and `tiny-initrd`), with `extra` CLI options.
    pub fn create_tiny_disk_image(&self, name: &str, extra: &[&str]) {
        create_tiny_disk_image_at(&self.url, &self.cli_config(), name, extra);
    }

    /// Generates a key pair `name`; returns the path of its private key (0600).
    pub async fn keypair(&self, name: &str) -> PathBuf {
        self.api.keypair_in(name, self.data_path()).await
    }

    /// Polls a server until its status is `want`.
    pub async fn wait_status(&self, id: &str, want: &str, limit: Duration) -> Value {
        self.api
            .wait_status_or_fail(id, want, limit, || self.log())
            .await
    }

    /// The server's console log.
    pub async fn console_log(&self, id: &str) -> String {
        self.api
            .try_console_log(id)
            .await
            .expect("the API refused the console log")
    }
}

impl std::ops::Deref for Cloud {
    type Target = ApiSession;
    fn deref(&self) -> &ApiSession {
        &self.api
    }
}

impl std::ops::DerefMut for Cloud {
    fn deref_mut(&mut self) -> &mut ApiSession {
        &mut self.api
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.kill9();
        drop(super::Reaper(
            self.data_path().to_string_lossy().into_owned(),
        ));
    }
}

/// Runs the `nubis` CLI against the API at `url`, logged in with the token
/// saved in `config`; fails the test when the command fails.
/// Runs `nubis admin create-user NAME [--admin]` on the store that
/// `store_args` name (`--data-dir DIR` and/or `--database-url URL`), the
/// password given as `NUBIS_PASSWORD`; it must succeed.
pub fn admin_create_user(store_args: &[&str], name: &str, password: &str, admin: bool) {
    let mut cmd = Command::new(nubis_bin());
    cmd.args(["admin", "create-user", name])
        .args(store_args)
        .env("NUBIS_PASSWORD", password);
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("running nubis admin create-user");
    assert!(
        out.status.success(),
        "nubis admin create-user {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn run_cli(url: &str, config: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(nubis_bin())
        .args(args)
        .env("NUBIS_URL", url)
        .env("NUBIS_CONFIG_DIR", config)
        .output()
        .expect("running the nubis CLI");
    assert!(
        out.status.success(),
        "nubis {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Uploads the tiny guest through the CLI at `url` (login in `config`) as
/// `tiny`, booting `tiny-kernel` and `tiny-initrd`.
pub fn upload_tiny_image_to(url: &str, config: &Path) {
    let dir: PathBuf = super::tiny_image_dir();
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let boot_files = [
        ("tiny-kernel", "aki", p("vmlinuz")),
        ("tiny-initrd", "ari", p("initrd.img")),
    ];
    for (name, format, file) in &boot_files {
        run_cli(
            url,
            config,
            &["image", "create", name, "--format", format, "--file", file],
        );
    }
    create_tiny_disk_image_at(url, config, "tiny", &[]);
}

/// Registers the tiny guest's disk as image `name` through the CLI at `url`
/// (booting the uploaded `tiny-kernel` and `tiny-initrd`), with `extra` options.
pub fn create_tiny_disk_image_at(url: &str, config: &Path, name: &str, extra: &[&str]) {
    let dir: PathBuf = super::tiny_image_dir();
    let disk = dir.join("disk.qcow2").to_string_lossy().into_owned();
    let cmdline = std::fs::read_to_string(dir.join("cmdline.txt")).expect("cmdline");
    let mut args = vec![
        "image",
        "create",
        name,
        "--format",
        "qcow2",
        "--file",
        &disk,
        "--kernel",
        "tiny-kernel",
        "--initrd",
        "tiny-initrd",
        "--cmdline",
        cmdline.trim(),
        "--os",
        "cirros-like",
        "--os-version",
        "1",
    ];
    args.extend_from_slice(extra);
    run_cli(url, config, &args);
}
