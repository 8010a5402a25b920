//! A cloud of several hosts on one machine: `nubis controller` in its own
//! network namespace and N `nubis agent`s, each in its own namespace (a
//! "host") with its own data dir and host certificate (joined with its own
//! join token over mutual TLS), all joined by an underlay: a Linux bridge in
//! a namespace of its own, with a veth to the controller and to every host.
//!
//! Addresses (only inside these namespaces): the underlay is
//! [`UNDERLAY_CIDR`]; the controller is [`CONTROLLER_IP`] (its agent
//! protocol listens there, its API on 127.0.0.1:8780 of its namespace);
//! host `i` is `172.31.0.(11 + i)`, its agent API on port [`AGENT_PORT`].
//!
//! The test body runs on a thread inside the controller's namespace (so
//! the API client reaches `http://127.0.0.1:8780`); commands for a host run
//! with `ip netns exec`. Everything (processes, QEMUs and dnsmasqs of every
//! host, namespaces) is removed when the [`MultiHost`] is dropped, also when
//! the test fails.
//!
//! ```ignore
//! support::multihost::run("mh", Options::hosts(3), |mut cloud| async move {
//!     cloud.create_admin_and_login("root", "root-password").await;
//!     cloud.upload_tiny_image();
//!     let (id, _) = cloud.create_server(json!({...})).await;
//!     let host = cloud.host_of(&id).await; // Some(index)
//!     cloud.kill_agent(host.unwrap());       // a host failure
//! });
//! ```

use super::api::ApiSession;
use super::cloud::{admin_create_user, nubis_bin, run_cli, upload_tiny_image_to};
use super::netns::NetNs;
use super::Reaper;
use reqwest::Method;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The underlay network (inside the test's namespaces only).
pub const UNDERLAY_CIDR: &str = "172.31.0.0/24";
/// The controller's underlay address.
pub const CONTROLLER_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
/// Where each agent's own API listens (on its underlay address).
pub const AGENT_PORT: u16 = 8790;
/// The controller's API, as the test body (in its namespace) reaches it.
pub const API: &str = "http://127.0.0.1:8780";
/// What an agent logs once registered (crates/agent/src/lib.rs).
const REGISTERED: &str = "registered with the controller";

/// The underlay address of host `index`.
pub fn host_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 31, 0, 11 + index as u8)
}

/// The name of host `index` (its `--host-name`).
pub fn host_name(index: usize) -> String {
    format!("host-{index}")
}

/// How to start the cloud.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// How many agents ("hosts").
    pub hosts: usize,
    /// A `postgres://` database for the controller (e.g. from
    /// `support::postgres::create_database`); SQLite in its data dir if none.
    pub database_url: Option<String>,
    /// Extra `nubis controller` arguments.
    pub controller_args: Vec<String>,
    /// Extra `nubis agent` arguments, for every host.
    pub agent_args: Vec<String>,
    /// Extra `nubis agent` arguments of host `i` (index `i`; absent: none).
    pub host_agent_args: Vec<Vec<String>>,
}

impl Options {
    /// `n` hosts on SQLite, no extra arguments.
    pub fn hosts(n: usize) -> Self {
        Self {
            hosts: n,
            ..Self::default()
        }
    }
}

/// A process killed (SIGKILL) on drop.
struct Process(Child);

impl Process {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, then waits (SIGKILL after `limit`).
    fn terminate(&mut self, limit: Duration) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One host: its namespace, data dir and agent process.
pub struct Host {
    pub name: String,
    /// The name of its network namespace.
    pub ns: String,
    pub ip: Ipv4Addr,
    pub data_dir: tempfile::TempDir,
    agent: Option<Process>,
    /// For the first start only (the host then keeps its certificate).
    join_token: Option<String>,
    /// How many registrations the log showed when the agent last started.
    registrations_before: usize,
}

impl Host {
    /// The agent's own data dir (`<data dir>/agent`: `instances/`, `networks/`).
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.path().join("agent")
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("agent.log")).unwrap_or_default()
    }
}

/// The namespaces and underlay links, made before anything runs.
struct Underlay {
    /// Holds the bridge `ul0` all members are plugged into.
    switch: NetNs,
    controller: NetNs,
    hosts: Vec<NetNs>,
}

impl Underlay {
    fn new(test: &str, hosts: usize) -> Self {
        let switch = NetNs::new(&format!("{test}-ul"));
        ip(&["-n", &switch.name, "link", "add", "ul0", "type", "bridge"]);
        ip(&["-n", &switch.name, "link", "set", "ul0", "up"]);
        let controller = NetNs::new(&format!("{test}-c"));
        plug(&switch, &controller, 0, CONTROLLER_IP);
        let hosts = (0..hosts)
            .map(|i| {
                let ns = NetNs::new(&format!("{test}-h{i}"));
                plug(&switch, &ns, i + 1, host_ip(i));
                ns
            })
            .collect();
        Self {
            switch,
            controller,
            hosts,
        }
    }
}

/// A veth from the underlay bridge (port `p<index>`) to `member`'s `eth0`
/// with address `addr`/24.
fn plug(switch: &NetNs, member: &NetNs, index: usize, addr: Ipv4Addr) {
    let port = format!("p{index}");
    ip(&[
        "-n",
        &switch.name,
        "link",
        "add",
        &port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &member.name,
    ]);
    ip(&["-n", &switch.name, "link", "set", &port, "master", "ul0"]);
    ip(&["-n", &switch.name, "link", "set", &port, "up"]);
    ip(&[
        "-n",
        &member.name,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "eth0",
    ]);
    ip(&["-n", &member.name, "link", "set", "eth0", "up"]);
}

/// The controller, the hosts and an API client logged in (once a `login`
/// helper was called). Removes everything on drop.
pub struct MultiHost {
    pub hosts: Vec<Host>,
    pub controller_dir: tempfile::TempDir,
    pub database_url: Option<String>,
    /// The API session (`token`, `call`...; set by the login helpers):
    /// see `Deref`.
    api: ApiSession,
    controller: Option<Process>,
    options: Options,
    // Dropped last (fields drop in declaration order after `Drop::drop`).
    underlay: Underlay,
}

/// Builds the underlay for `options.hosts` hosts, then runs `body` on a
/// thread in the controller's namespace (own tokio runtime) with the cloud
/// started: controller up, every agent joined and registered.
pub fn run<F, Fut>(test: &str, options: Options, body: F)
where
    F: FnOnce(MultiHost) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let test = test.to_owned();
    let result = std::thread::spawn(move || {
        let underlay = Underlay::new(&test, options.hosts);
        underlay.controller.enter_current_thread();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                let cloud = MultiHost::start(underlay, options).await;
                body(cloud).await;
            });
    })
    .join();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

impl MultiHost {
    async fn start(underlay: Underlay, options: Options) -> Self {
        let controller_dir = tempfile::Builder::new()
            .prefix("nubis-mh-ctl-")
            .tempdir()
            .expect("temp dir");
        let hosts = underlay
            .hosts
            .iter()
            .enumerate()
            .map(|(i, ns)| Host {
                name: host_name(i),
                ns: ns.name.clone(),
                ip: host_ip(i),
                data_dir: tempfile::Builder::new()
                    .prefix(&format!("nubis-mh-h{i}-"))
                    .tempdir()
                    .expect("temp dir"),
                agent: None,
                join_token: None,
                registrations_before: 0,
            })
            .collect();
        let mut cloud = Self {
            hosts,
            controller_dir,
            database_url: options.database_url.clone(),
            api: ApiSession::new(API),
            controller: None,
            options,
            underlay,
        };
        cloud.start_controller().await;
        let data = cloud.controller_path().to_string_lossy().into_owned();
        for i in 0..cloud.hosts.len() {
            cloud.hosts[i].join_token = Some(super::join::join_token(
                &data,
                cloud.database_url.as_deref(),
            ));
            cloud.start_agent(i);
        }
        // Registration goes through the agent protocol; an admin sees it.
        cloud.wait_registered().await;
        cloud
    }

    pub fn controller_path(&self) -> &Path {
        self.controller_dir.path()
    }

    /// The store arguments of `nubis admin ...` for this controller.
    pub fn store_args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_owned(),
            self.controller_path().to_string_lossy().into_owned(),
        ];
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".to_owned(), url.clone()]);
        }
        args
    }

    /// Starts (again) `nubis controller` in its namespace, on the same store.
    pub async fn start_controller(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.controller_path().join("controller.log"))
            .expect("log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.underlay.controller.name, nubis_bin()])
            .args(["controller", "--listen", "127.0.0.1:8780"])
            .args(["--cluster-listen", &format!("{CONTROLLER_IP}:8781")])
            .args(self.store_args())
            .args(&self.options.controller_args)
            .env("NUBIS_LOG", "info,nubis=debug")
            .stdout(Stdio::null())
            .stderr(log);
        self.controller = Some(Process(cmd.spawn().expect("nubis controller")));
        super::wait_for_api(self.api.http(), API, Duration::from_secs(30)).await;
    }

    /// SIGKILLs the controller (start it again with `start_controller`).
    pub fn kill_controller(&mut self) {
        if let Some(mut p) = self.controller.take() {
            p.kill();
        }
    }

    /// The controller's log so far.
    pub fn controller_log(&self) -> String {
        std::fs::read_to_string(self.controller_path().join("controller.log")).unwrap_or_default()
    }

    /// Starts (again) host `i`'s agent; its guests keep their state.
    pub fn start_agent(&mut self, i: usize) {
        let mut extra = self.options.agent_args.clone();
        extra.extend(
            self.options
                .host_agent_args
                .get(i)
                .cloned()
                .unwrap_or_default(),
        );
        let host = &mut self.hosts[i];
        assert!(host.agent.is_none(), "the agent of {} runs", host.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(host.data_dir.path().join("agent.log"))
            .expect("log");
        let mut cmd = Command::new("ip");
        host.registrations_before = host.log().matches(REGISTERED).count();
        cmd.args(["netns", "exec", &host.ns, nubis_bin(), "agent"])
            .args(["--controller-url", &format!("https://{CONTROLLER_IP}:8781")])
            .arg("--data-dir")
            .arg(host.data_dir.path())
            .args(["--host-name", &host.name])
            .args(["--agent-listen", &format!("{}:{AGENT_PORT}", host.ip)])
            .args(["--accel", "tcg", "--stop-timeout", "20"])
            // Guests may not reach the underlay (other hosts, the controller).
            .args(["--management-cidr", UNDERLAY_CIDR])
            .args(&extra)
            .env("NUBIS_LOG", "info,nubis=debug")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(token) = host.join_token.take() {
            cmd.args(["--join-token", &token]);
        }
        host.agent = Some(Process(cmd.spawn().expect("nubis agent")));
    }

    /// Stops host `i`'s agent gracefully (SIGTERM); guests keep running.
    pub fn stop_agent(&mut self, i: usize) {
        if let Some(mut p) = self.hosts[i].agent.take() {
            p.terminate(Duration::from_secs(30));
        }
    }

    /// SIGKILLs host `i`'s agent only (its guests keep running).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut p) = self.hosts[i].agent.take() {
            p.kill();
        }
    }

    /// A host failure: SIGKILLs host `i`'s agent and every QEMU and dnsmasq
    /// it started. Its data dir stays (for a later `start_agent`).
    pub fn kill_host(&mut self, i: usize) {
        self.kill_agent(i);
        super::kill_processes_mentioning(&self.hosts[i].data_dir.path().to_string_lossy());
    }

    /// Runs `program args` in host `i`'s namespace.
    pub fn run_on(&self, i: usize, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns, program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {program} on {}: {e}", self.hosts[i].name))
    }

    /// The namespace name of host `i` (for `support::guest::ssh(Some(ns), ..)`).
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i].ns
    }

    /// Waits until every running agent has registered (since its last
    /// start) with the controller, as its log says.
    pub async fn wait_registered(&self) {
        for i in 0..self.hosts.len() {
            if self.hosts[i].agent.is_some() {
                self.wait_agent_registered(i).await;
            }
        }
    }

    /// Waits until host `i`'s agent has registered since its last start.
    pub async fn wait_agent_registered(&self, i: usize) {
        let host = &self.hosts[i];
        super::wait_for(
            &format!("{} to register", host.name),
            Duration::from_secs(90),
            || async {
                (host.log().matches(REGISTERED).count() > host.registrations_before).then_some(())
            },
        )
        .await;
    }

    /// Makes `name` (an admin when `admin`) on the store as an operator
    /// does, and logs in as it; the token is used from then on.
    pub async fn create_user_and_login(&mut self, name: &str, password: &str, admin: bool) {
        let store = self.store_args();
        let args: Vec<&str> = store.iter().map(String::as_str).collect();
        admin_create_user(&args, name, password, admin);
        self.login(name, password).await;
    }

    /// Makes the admin `name` and logs in as it.
    pub async fn create_admin_and_login(&mut self, name: &str, password: &str) {
        self.create_user_and_login(name, password, true).await;
    }

    /// The CLI's config dir, holding the current login token.
    pub fn cli_config(&self) -> PathBuf {
        self.api.cli_config_in(self.controller_path())
    }

    /// Runs the `nubis` CLI as the logged-in user (must succeed).
    pub fn cli(&self, args: &[&str]) -> Output {
        run_cli(API, &self.cli_config(), args)
    }

    /// Uploads the tiny guest as `tiny` (with `tiny-kernel`, `tiny-initrd`)
    /// as the logged-in user.
    pub fn upload_tiny_image(&self) {
        upload_tiny_image_to(API, &self.cli_config());
    }

    /// Generates a key pair `name` as the logged-in user; returns the path
    /// of its private key (0600).
    pub async fn keypair(&self, name: &str) -> PathBuf {
        self.api.keypair_in(name, self.controller_path()).await
    }

    /// Runs `command` in a guest at `ip` over ssh from host `i` (where the
    /// guest runs: its bridge has the gateway address).
    pub fn ssh(&self, i: usize, key: &Path, ip: &str, command: &str) -> Output {
        super::guest::ssh(Some(self.ns(i)), key, ip, command)
    }

    /// Polls a server until its status is `want` (fails on `error`).
    pub async fn wait_status(&self, id: &str, want: &str, limit: Duration) -> Value {
        self.api
            .wait_status_or_fail(id, want, limit, || self.controller_log())
            .await
    }

    /// The server's console log.
    pub async fn console_log(&self, id: &str) -> String {
        self.api.try_console_log(id).await.unwrap_or_default()
    }

    /// The index of the host whose data dir holds server `id`'s instance
    /// directory (what the host really has, whatever the controller says).
    pub fn host_holding(&self, id: &str) -> Option<usize> {
        self.hosts
            .iter()
            .position(|h| h.agent_dir().join("instances").join(id).exists())
    }

    /// The index of the host the controller placed server `id` on (its
    /// `host` field, seen by the logged-in user; needs an admin's
    /// /v1/hosts for the name), or `None` when not placed.
    pub async fn host_of(&self, id: &str) -> Option<usize> {
        let (_, server) = self
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        let host_id = server["host"].as_str()?.to_owned();
        let (s, hosts) = self.call(Method::GET, "/v1/hosts", None).await;
        if !s.is_success() {
            // Not an admin: fall back on what the hosts hold.
            return self.host_holding(id);
        }
        let name = hosts
            .as_array()?
            .iter()
            .find(|h| h["id"] == host_id.as_str())?["name"]
            .as_str()?
            .to_owned();
        self.hosts.iter().position(|h| h.name == name)
    }

    /// The controller's id of host `i` (needs an admin login).
    pub async fn host_id(&self, i: usize) -> String {
        let (s, hosts) = self.call(Method::GET, "/v1/hosts", None).await;
        assert!(s.is_success(), "GET /v1/hosts: {s} {hosts}");
        hosts
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["name"] == self.hosts[i].name.as_str())
            .and_then(|h| h["id"].as_str())
            .unwrap_or_else(|| panic!("host {} is not registered: {hosts}", self.hosts[i].name))
            .to_owned()
    }
}

impl std::ops::Deref for MultiHost {
    type Target = ApiSession;
    fn deref(&self) -> &ApiSession {
        &self.api
    }
}

impl std::ops::DerefMut for MultiHost {
    fn deref_mut(&mut self) -> &mut ApiSession {
        &mut self.api
    }
}

impl Drop for MultiHost {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut p) = host.agent.take() {
                p.kill();
            }
            drop(Reaper(host.data_dir.path().to_string_lossy().into_owned()));
        }
        // Directories given to the agents (a shared instance store) may hold
        // instances too: their QEMUs mention those paths, not a data dir.
        for arg in &self.options.agent_args {
            // `/dir` or `--flag=/dir`.
            let path = arg.rsplit('=').next().unwrap_or(arg);
            if path.starts_with('/') && Path::new(path).is_dir() {
                drop(Reaper(path.to_owned()));
            }
        }
        self.kill_controller();
        drop(Reaper(
            self.controller_path().to_string_lossy().into_owned(),
        ));
        // The namespaces go with `underlay`, dropped after this.
    }
}
