//! The parts apart: `nubis controller` (on PostgreSQL when the test run has
//! one, as a multi-controller deployment would) and `nubis agent` as two
//! processes with their own data directories, talking only through the
//! agent protocol; a server boots through them and is deleted cleanly.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::cloud::{nubis_bin, upload_tiny_image_to};
use support::netns::run_in_netns;
use support::Reaper;

const BOOT: Duration = Duration::from_secs(180);

/// Kills the child process on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], log: &std::path::Path) -> Process {
    let log = std::fs::File::create(log).unwrap();
    Process(
        Command::new(nubis_bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nubis"),
    )
}

/// A fresh PostgreSQL database on the test run's server, if there is one.
/// Without one the test runs on SQLite; under CI (`make test` runs it under
/// scripts/with-postgres.sh) a missing server is a failure instead.
fn postgres_database() -> Option<String> {
    let Ok(admin) = std::env::var("NUBIS_TEST_DATABASE_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "NUBIS_TEST_DATABASE_URL is not set, but CI is: run under scripts/with-postgres.sh"
        );
        eprintln!("note: NUBIS_TEST_DATABASE_URL is not set; the controller uses SQLite");
        return None;
    };
    Some(support::postgres::create_database(&admin, "split").url)
}

#[test]
fn controller_and_agent_as_separate_processes() {
    let database = postgres_database();
    run_in_netns("split", move || async move {
        let controller_dir = tempfile::tempdir().unwrap();
        let agent_dir = tempfile::tempdir().unwrap();
        let c = controller_dir.path().to_string_lossy().into_owned();
        let a = agent_dir.path().to_string_lossy().into_owned();
        let _reaper = Reaper(a.clone());
        let mut controller_args = vec!["controller", "--data-dir", &c];
        if let Some(url) = &database {
            controller_args.extend(["--database-url", url.as_str()]);
        }
        let _controller = spawn(&controller_args, &controller_dir.path().join("log"));
        // The operator makes a join token on the controller's machine; the
        // agent joins with it through the agent protocol (mutual TLS).
        let join_token = support::join::join_token(&c, database.as_deref());
        let _agent = spawn(
            &[
                "agent",
                "--controller-url",
                "https://127.0.0.1:8781",
                "--data-dir",
                &a,
                "--join-token",
                &join_token,
                "--accel",
                "tcg",
                "--host-name",
                "host-a",
            ],
            &agent_dir.path().join("log"),
        );

        let http = reqwest::Client::new();
        let url = |p: &str| format!("http://127.0.0.1:8780{p}");
        support::wait_for_api(&http, &url(""), Duration::from_secs(30)).await;
        // `nubis controller` takes no registrations: its operator makes
        // the accounts on the store (an admin here, to list hosts).
        let creds = json!({"name": "gina", "password": "gina-password"});
        let r = http
            .post(url("/v1/users"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let mut store = vec!["--data-dir", c.as_str()];
        if let Some(url) = &database {
            store.extend(["--database-url", url.as_str()]);
        }
        support::cloud::admin_create_user(&store, "gina", "gina-password", true);
        let t: serde_json::Value = http
            .post(url("/v1/tokens"))
            .json(&creds)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = t["token"].as_str().unwrap().to_owned();
        let call = |m: Method, p: &str, body: Option<serde_json::Value>| {
            let mut r = http.request(m, url(p)).bearer_auth(&token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            r.send()
        };
        // The host registers itself through the agent protocol (the agent
        // retries every second until the controller answers).
        support::wait_for("host-a to register", Duration::from_secs(30), || async {
            let hosts: serde_json::Value = call(Method::GET, "/v1/hosts", None)
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            hosts.to_string().contains("host-a").then_some(())
        })
        .await;

        // Upload the tiny guest through the CLI.
        let cfg = controller_dir.path().join("cli");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("token"), &token).unwrap();
        upload_tiny_image_to("http://127.0.0.1:8780", &cfg);

        let server: serde_json::Value = call(
            Method::POST,
            "/v1/servers",
            Some(json!({"name": "s", "image": "tiny", "flavor": "tiny"})),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let id = server["id"].as_str().expect("server id").to_owned();
        support::wait_for("running", BOOT, || async {
            let s: serde_json::Value = call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            assert_ne!(s["status"], "error", "{s}");
            (s["status"] == "running").then_some(())
        })
        .await;
        support::wait_for(
            "boot-count: 1 through the agent's console API",
            BOOT,
            || async {
                let log = call(Method::GET, &format!("/v1/servers/{id}/console-log"), None)
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                log.contains("boot-count: 1").then_some(())
            },
        )
        .await;
        // Only the agent's data dir holds the instance.
        assert!(agent_dir.path().join("agent/instances").join(&id).exists());

        let r = call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        support::wait_for("delete", BOOT, || async {
            let r = call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await
                .ok()?;
            (r.status() == StatusCode::NOT_FOUND && support::qemu_pids(&id).is_empty())
                .then_some(())
        })
        .await;
        assert!(!agent_dir.path().join("agent/instances").join(&id).exists());
    });
}
