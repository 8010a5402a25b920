//! Two controllers on one PostgreSQL database, and one agent given both
//! URLs, in a network namespace: any controller serves any request.
//!
//! - a user registered at one logs in and works at the other;
//! - a console link issued by one opens at the other, once (a second use,
//!   at either, is 401);
//! - a lease that runs out while both run is processed once (exactly one
//!   `lease_expired` event), though both run the terms keeper's loop;
//! - one controller is killed (`kill -9`) in the middle of a burst of
//!   creates: every server the API accepted (202) exists afterwards and
//!   converges to running, through the agent failing over to the other,
//!   which also takes over the terms keeper's leader lease;
//! - the killed one comes back and the other dies: the agent follows.
//!
//! The controllers share their data directory (uploaded images), as they
//! would share a file system in such a deployment. Needs PostgreSQL
//! (`scripts/with-postgres.sh`); without it the test is skipped with a note,
//! except under CI (`CI` set), where it fails.

mod support;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::cloud::{nubis_bin, upload_tiny_image_to};
use support::netns::run_in_netns;
use support::wait_for;
use support::Reaper;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

const BOOT: Duration = Duration::from_secs(300);
const A: &str = "http://127.0.0.1:8780";
const B: &str = "http://127.0.0.1:8781";
/// Servers created in the burst; controller A is killed after this many.
const BURST: usize = 6;
const KILL_AFTER: usize = 3;

/// A child process, killed on drop.
struct Process(Option<Child>);

impl Process {
    fn kill9(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(args: &[&str], log: &std::path::Path) -> Process {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Process(Some(
        Command::new(nubis_bin())
            .args(args)
            .env("NUBIS_LOG", "info,nubis=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nubis"),
    ))
}

/// A fresh database on the test run's PostgreSQL server, dropped on drop.
struct Database {
    admin: String,
    name: String,
    /// The URL for processes inside the test's namespace (unix socket).
    url: String,
}

impl Database {
    /// None (after a note) without a server; a failure under CI.
    fn create() -> Option<Self> {
        let Ok(admin) = std::env::var("NUBIS_TEST_DATABASE_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "NUBIS_TEST_DATABASE_URL is not set, but CI is: run this test under \
                 scripts/with-postgres.sh"
            );
            eprintln!(
                "note: NUBIS_TEST_DATABASE_URL is not set; skipping the two-controller test \
                 (run it under scripts/with-postgres.sh)"
            );
            return None;
        };
        let db = support::postgres::create_database(&admin, "two");
        Some(Self {
            admin,
            name: db.name,
            url: db.url,
        })
    }
}

/// The first value of SQL at `url`, as text, through psql.
fn query(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-At", "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One number from SQL at `url`.
fn scalar(url: &str, sql: &str) -> i64 {
    query(url, sql).parse().expect("a number")
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin)
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .status();
    }
}

/// An API client of one controller, logged in with a token.
#[derive(Clone)]
struct Api {
    base: &'static str,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{} {path}: {e}", self.base))
    }

    async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// Opens the console websocket at `base` with `token`, from `base`'s own
/// origin. Err: the HTTP status of a refused handshake.
async fn open_console(
    base: &str,
    token: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    StatusCode,
> {
    let mut req = format!(
        "{}/v1/console/websocket",
        base.replacen("http://", "ws://", 1)
    )
    .into_client_request()
    .unwrap();
    let h = req.headers_mut();
    h.insert("origin", base.parse().unwrap());
    h.insert(
        "sec-websocket-protocol",
        format!("binary, nubis-console.{token}").parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(resp)) => {
            Err(StatusCode::from_u16(resp.status().as_u16()).unwrap())
        }
        Err(e) => panic!("websocket: {e}"),
    }
}

async fn wait_api(http: &reqwest::Client, base: &str) {
    support::wait_for_api(http, base, Duration::from_secs(60)).await;
}

async fn wait_running(api: &Api, id: &str, log: &dyn Fn() -> String) {
    wait_for(&format!("server {id} to run"), BOOT, || async {
        let (s, b) = api
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "server {id} lost: {b}");
        assert_ne!(b["status"], "error", "{b}\n{}", log());
        (b["status"] == "running").then_some(())
    })
    .await;
}

#[test]
fn two_controllers_serve_one_cloud() {
    let Some(database) = Database::create() else {
        return;
    };
    // Created and dropped outside the namespace (its admin URL is TCP on
    // the root namespace's loopback); processes inside use the socket.
    let database_url = database.url.clone();
    run_in_netns("two-ctl", move || async move {
        let database_url = &database_url;
        let shared = tempfile::tempdir().unwrap();
        let agent_dir = tempfile::tempdir().unwrap();
        let c = shared.path().to_string_lossy().into_owned();
        let a = agent_dir.path().to_string_lossy().into_owned();
        let _reaper = Reaper(a.clone());
        let offset_file = format!("{c}/clock-offset");
        std::fs::write(&offset_file, "0").unwrap();
        // Each controller's agent protocol listens 10 ports above its API.
        let controller = |listen: &str, log: &str| {
            let cluster_listen = listen.replace(":878", ":879");
            spawn(
                &[
                    "controller",
                    "--data-dir",
                    &c,
                    "--database-url",
                    database_url,
                    "--listen",
                    listen,
                    "--cluster-listen",
                    &cluster_listen,
                    "--rental-check-interval",
                    "1",
                    "--clock-offset-file",
                    &offset_file,
                    // `nubis controller` takes no registrations by default.
                    "--registration",
                    "open",
                ],
                &shared.path().join(log),
            )
        };
        // Both start at once on the empty database: the migrator's lock
        // keeps them from racing.
        let mut controller_a = controller("127.0.0.1:8780", "a.log");
        let controller_b = controller("127.0.0.1:8781", "b.log");
        let pid_b = controller_b.0.as_ref().unwrap().id();
        // Both controllers share the data dir, so the cluster CA: the one
        // join token works with either, and the agent fails over between
        // them with the one host certificate.
        let join_token = support::join::join_token(&c, Some(database_url));
        let _agent = spawn(
            &[
                "agent",
                "--controller-url",
                "https://127.0.0.1:8790,https://127.0.0.1:8791",
                "--data-dir",
                &a,
                "--join-token",
                &join_token,
                "--accel",
                "tcg",
                "--host-name",
                "host-a",
                "--stop-timeout",
                "10",
            ],
            &agent_dir.path().join("log"),
        );
        let logs = || {
            let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
            format!(
                "--- a.log\n{}\n--- b.log\n{}\n--- agent log\n{}",
                read(shared.path().join("a.log")),
                read(shared.path().join("b.log")),
                read(agent_dir.path().join("log"))
            )
        };
        let http = reqwest::Client::new();
        wait_api(&http, A).await;
        wait_api(&http, B).await;

        // Registered at A, logged in at B: one user table, one token table.
        let creds = json!({"name": "tina", "password": "tina-password"});
        let r = http
            .post(format!("{A}/v1/users"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let t: Value = http
            .post(format!("{B}/v1/tokens"))
            .json(&creds)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = t["token"].as_str().expect("token").to_owned();
        let api_a = Api {
            base: A,
            token: token.clone(),
            http: http.clone(),
        };
        let api_b = Api {
            base: B,
            token: token.clone(),
            http: http.clone(),
        };
        // Listing hosts takes an admin: the operator makes one on the
        // shared store (registering never makes one).
        support::cloud::admin_create_user(
            &["--data-dir", &c, "--database-url", database_url],
            "ops",
            "ops-password",
            true,
        );
        let ops = json!({"name": "ops", "password": "ops-password"});
        let t: Value = http
            .post(format!("{B}/v1/tokens"))
            .json(&ops)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ops_b = Api {
            base: B,
            token: t["token"].as_str().expect("ops token").to_owned(),
            http: http.clone(),
        };
        wait_for("the host to register", Duration::from_secs(60), || async {
            let (_, hosts) = ops_b.call(Method::GET, "/v1/hosts", None).await;
            hosts.to_string().contains("host-a").then_some(())
        })
        .await;

        // The tiny guest, uploaded through A (the CLI against A).
        let cfg = shared.path().join("cli");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("token"), &token).unwrap();
        upload_tiny_image_to(A, &cfg);

        // Created through A, with a lease; watched through B.
        let (s, first) = api_a
            .call(
                Method::POST,
                "/v1/servers",
                Some(json!({"name": "first", "image": "tiny", "flavor": "tiny",
                            "lease": {"duration_seconds": 3600}})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{first}");
        let first = first["id"].as_str().unwrap().to_owned();
        wait_running(&api_b, &first, &logs).await;

        // A console link from A opens at B, once.
        let (s, access) = api_a
            .call(Method::POST, &format!("/v1/servers/{first}/console"), None)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{access}");
        let console_token = access["token"].as_str().unwrap().to_owned();
        let mut socket = open_console(B, &console_token)
            .await
            .unwrap_or_else(|s| panic!("the link from A refused at B: {s}\n{}", logs()));
        let greeting = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("RFB greeting in time")
            .expect("socket open")
            .expect("frame");
        match greeting {
            Message::Binary(b) => assert!(b.starts_with(b"RFB "), "{b:?}"),
            other => panic!("expected the RFB greeting, got {other:?}"),
        }
        drop(socket);
        for base in [B, A] {
            assert_eq!(
                open_console(base, &console_token).await.err(),
                Some(StatusCode::UNAUTHORIZED),
                "a used link at {base}"
            );
        }
        // Positive control of the refusal: a fresh link still works at A.
        let (_, access) = api_b
            .call(Method::POST, &format!("/v1/servers/{first}/console"), None)
            .await;
        let fresh = access["token"].as_str().unwrap().to_owned();
        assert!(open_console(A, &fresh).await.is_ok(), "a link from B at A");

        // The lease runs out (the clocks move two hours on) while both
        // controllers run their terms keeper: processed once.
        std::fs::write(&offset_file, "7200").unwrap();
        wait_for("the lease to stop the server", BOOT, || async {
            let (_, b) = api_b
                .call(Method::GET, &format!("/v1/servers/{first}"), None)
                .await;
            (b["status"] == "stopped").then_some(())
        })
        .await;
        // Several more sweeps of both controllers.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (s, events) = api_a
            .call(Method::GET, &format!("/v1/servers/{first}/events"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{events}");
        let expired = events
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["kind"] == "lease_expired")
            .count();
        assert_eq!(expired, 1, "one lease_expired event: {events}");
        assert_eq!(
            scalar(
                database_url,
                "SELECT COUNT(*) FROM leader_leases WHERE name = 'terms_keeper'"
            ),
            1
        );

        // A burst of creates through both; A dies in the middle of it.
        let mut accepted = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..BURST {
            let api = if i % 2 == 0 {
                api_a.clone()
            } else {
                api_b.clone()
            };
            tasks.push(tokio::spawn(async move {
                let body = json!({"name": format!("burst-{i}"), "image": "tiny", "flavor": "tiny"});
                api.try_call(Method::POST, "/v1/servers", Some(body)).await
            }));
            if i + 1 == KILL_AFTER {
                tokio::time::sleep(Duration::from_millis(50)).await;
                controller_a.kill9();
            }
        }
        let mut refused_by_the_dead = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok((StatusCode::ACCEPTED, b)) => {
                    accepted.push(b["id"].as_str().unwrap().to_owned());
                }
                Ok((s, b)) => panic!("create answered {s}: {b}"),
                // A's: the connection was refused or cut.
                Err(_) => refused_by_the_dead += 1,
            }
        }
        eprintln!(
            "burst: {} accepted, {refused_by_the_dead} not answered by the killed controller",
            accepted.len()
        );
        assert!(
            accepted.len() >= BURST / 2,
            "B accepts all of its share: {accepted:?}"
        );

        // Everything accepted exists and runs, through B alone (the agent
        // fails over to it).
        for id in &accepted {
            wait_running(&api_b, id, &logs).await;
        }
        // Nothing else is stuck either (a create A committed as it died).
        let (_, list) = api_b.call(Method::GET, "/v1/servers", None).await;
        for server in list.as_array().expect("servers") {
            let id = server["id"].as_str().unwrap();
            if id != first {
                wait_running(&api_b, id, &logs).await;
            }
        }
        // The terms keeper's lease is B's now (taken over when A's
        // expired, if A held it).
        let lease_holder = || {
            query(
                database_url,
                "SELECT holder FROM leader_leases WHERE name = 'terms_keeper'",
            )
        };
        wait_for("B to hold the terms keeper's lease", BOOT, || async {
            lease_holder().contains(&format!(":{pid_b}:")).then_some(())
        })
        .await;
        // Changes made at B reach the agent, now B's: a stop converges.
        let victim = &accepted[0];
        let (s, _) = api_b
            .call(Method::POST, &format!("/v1/servers/{victim}/stop"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        wait_for("the stop to converge", BOOT, || async {
            let (_, b) = api_b
                .call(Method::GET, &format!("/v1/servers/{victim}"), None)
                .await;
            (b["status"] == "stopped").then_some(())
        })
        .await;
        let agent_log =
            || std::fs::read_to_string(agent_dir.path().join("log")).unwrap_or_default();
        let failovers = || {
            agent_log()
                .matches("failed over to this controller")
                .count()
        };
        // Calls in flight at once (long poll, report) each fail over.
        let to_b = failovers();
        assert!(to_b >= 1, "the agent failed over to B: {}", agent_log());

        // And back: A returns, B dies; the agent follows A, where the
        // stopped server is started again.
        let _controller_a = controller("127.0.0.1:8780", "a.log");
        wait_api(&http, A).await;
        drop(controller_b);
        let (s, _) = api_a
            .call(Method::POST, &format!("/v1/servers/{victim}/start"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        wait_running(&api_a, victim, &logs).await;
        assert!(
            failovers() > to_b,
            "the agent came back to A: {}",
            agent_log()
        );
    });
    drop(database);
}
