//! Accounts with the real binary: `nubis up` takes registrations but makes
//! no admin by them; `nubis controller` takes none unless told; `nubis admin
//! create-user` makes users (admins with `--admin`) on a running cloud's
//! store, SQLite or PostgreSQL, with the password from `--password`,
//! `NUBIS_PASSWORD` or standard input.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::cloud::{nubis_bin, Cloud};
use support::netns::run_in_netns;

/// `nubis admin create-user ARGS` run in `cwd`, with `stdin` as its input,
/// and none of the environment that would name a store or a password
/// unless `env` sets it.
fn create_user(cwd: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(nubis_bin());
    cmd.args(["admin", "create-user"])
        .args(args)
        .current_dir(cwd)
        .env_remove("NUBIS_DATA_DIR")
        .env_remove("NUBIS_DATABASE_URL")
        .env_remove("NUBIS_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("running nubis admin create-user");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Logs in over the API; returns (status, body).
async fn login(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    password: &str,
) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{base}/v1/tokens"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Whether `token` may list hosts (an admin-only call).
async fn lists_hosts(http: &reqwest::Client, base: &str, token: &Value) -> StatusCode {
    http.get(format!("{base}/v1/hosts"))
        .bearer_auth(token.as_str().expect("a token"))
        .send()
        .await
        .unwrap()
        .status()
}

#[test]
fn admin_create_user_works_on_a_running_nubis_up() {
    run_in_netns("accounts-up", || async {
        let mut cloud = Cloud::start().await;
        let base = cloud.url.clone();
        let http = reqwest::Client::new();

        // `nubis up` takes registrations; the first account is no admin.
        let (s, b) = cloud.call(Method::GET, "/v1/registration", None).await;
        assert_eq!((s, b), (StatusCode::OK, json!({"registration": "open"})));
        cloud.register_and_login("first", "first-password").await;
        let (_, me) = cloud.call(Method::GET, "/v1/users/me", None).await;
        assert_eq!(me["admin"], false, "{me}");
        let (s, _) = cloud.call(Method::GET, "/v1/hosts", None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "the first user is no admin");

        // `make up` keeps its data in ./.nubis of the checkout, where the
        // tour's commands run: the command finds it there by default.
        let checkout = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(cloud.data_path(), checkout.path().join(".nubis")).unwrap();
        let cwd = checkout.path();

        // The admin, password by flag.
        let out = create_user(
            cwd,
            &["root", "--admin", "--password", "root-password"],
            &[],
            "",
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("Created user 'root' (admin)."),
            "{}",
            text(&out)
        );
        let (s, root) = login(&http, &base, "root", "root-password").await;
        assert_eq!(s, StatusCode::CREATED, "{root}");
        assert_eq!(root["user"]["admin"], true, "{root}");
        assert_eq!(
            lists_hosts(&http, &base, &root["token"]).await,
            StatusCode::OK
        );

        // A user, password from NUBIS_PASSWORD; another from standard input.
        let out = create_user(cwd, &["nina"], &[("NUBIS_PASSWORD", "nina-password")], "");
        assert!(out.status.success(), "{}", text(&out));
        let (s, nina) = login(&http, &base, "nina", "nina-password").await;
        assert_eq!(s, StatusCode::CREATED, "{nina}");
        assert_eq!(nina["user"]["admin"], false, "{nina}");
        assert_eq!(
            lists_hosts(&http, &base, &nina["token"]).await,
            StatusCode::FORBIDDEN
        );
        let out = create_user(cwd, &["sam"], &[], "sam-password\n");
        assert!(out.status.success(), "{}", text(&out));
        let (s, sam) = login(&http, &base, "sam", "sam-password").await;
        assert_eq!(s, StatusCode::CREATED, "{sam}");

        // Refusals name the reason and make nothing.
        let out = create_user(
            cwd,
            &["nina", "--admin", "--password", "other-password"],
            &[],
            "",
        );
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("already exists"), "{}", text(&out));
        let (s, _) = login(&http, &base, "nina", "other-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let out = create_user(cwd, &["tom", "--password", "short"], &[], "");
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("at least 8"), "{}", text(&out));
        let (s, _) = login(&http, &base, "tom", "tom-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    });
}

/// Kills the child process on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn nubis_controller_takes_no_registrations_and_its_admin_is_made_on_postgresql() {
    let Ok(server) = std::env::var("NUBIS_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "NUBIS_TEST_DATABASE_URL is not set, but CI is: run under scripts/with-postgres.sh"
        );
        eprintln!(
            "note: NUBIS_TEST_DATABASE_URL is not set; skipping the PostgreSQL accounts test"
        );
        return;
    };
    let database = support::postgres::create_database(&server, "accounts").url;
    run_in_netns("accounts-pg", move || async move {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("controller.log")).unwrap();
        let data_dir = dir.path().join("data");
        let _controller = Process(
            Command::new(nubis_bin())
                .args(["controller", "--database-url", &database, "--data-dir"])
                .arg(&data_dir)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nubis controller"),
        );
        let base = "http://127.0.0.1:8780";
        let http = reqwest::Client::new();
        support::wait_for_api(&http, base, Duration::from_secs(30)).await;
        let status: Value = http
            .get(format!("{base}/v1/registration"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status, json!({"registration": "closed"}));
        let resp = http
            .post(format!("{base}/v1/users"))
            .json(&json!({"name": "mallory", "password": "mallory-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "registration_closed", "{body}");
        let (s, _) = login(&http, base, "mallory", "mallory-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "no account was made");

        // The operator makes the admin on the database (no data dir needed:
        // none is created where the command runs).
        let cwd = tempfile::tempdir().unwrap();
        let out = create_user(
            cwd.path(),
            &["ops", "--admin", "--database-url", &database],
            &[("NUBIS_PASSWORD", "ops-password")],
            "",
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            !cwd.path().join(".nubis").exists(),
            "no SQLite dir made for PostgreSQL"
        );
        let (s, ops) = login(&http, base, "ops", "ops-password").await;
        assert_eq!(s, StatusCode::CREATED, "{ops}");
        assert_eq!(ops["user"]["admin"], true, "{ops}");
        assert_eq!(
            lists_hosts(&http, base, &ops["token"]).await,
            StatusCode::OK
        );
    });
}
