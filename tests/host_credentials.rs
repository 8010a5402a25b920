//! Hosts have their own credentials, over TLS: real `nubis controller` and
//! `nubis agent` processes in a network namespace, each agent joined with
//! its own single-use join token and holding its own host certificate.
//!
//! Attacks tried, each next to a positive control: a host reading or
//! reporting another host's state (403; its own works), a call without a
//! client certificate (401) or over plain HTTP (no answer), a wrong or used
//! join token (401), registering another host's name or an address the
//! certificate does not name (403), and an agent presenting another host's
//! certificate at the address the controller has for a host (the controller
//! refuses it: 502, while the right agent there serves the console log).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::cloud::{nubis_bin, upload_tiny_image_to};
use support::netns::run_in_netns;
use support::Reaper;

const BOOT: Duration = Duration::from_secs(240);
const API: &str = "http://127.0.0.1:8780";
const CLUSTER: &str = "https://127.0.0.1:8781";
/// Where host A's agent listens; host B's agent later takes it over.
const A_LISTEN: &str = "127.0.0.1:8782";
const B_LISTEN: &str = "127.0.0.1:8783";

/// Kills the child process on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], log: &Path) -> Process {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Process(
        Command::new(nubis_bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nubis"),
    )
}

/// `nubis agent` for host `name` with its data dir `dir`, listening on
/// `listen`; `join_token` only for the first start.
fn agent(
    name: &str,
    dir: &str,
    listen: &str,
    metadata_port: &str,
    join_token: Option<&str>,
) -> Process {
    let mut args = vec![
        "agent",
        "--controller-url",
        CLUSTER,
        "--data-dir",
        dir,
        "--agent-listen",
        listen,
        "--metadata-port",
        metadata_port,
        "--accel",
        "tcg",
        "--host-name",
        name,
        "--stop-timeout",
        "5",
    ];
    if let Some(token) = join_token {
        args.extend(["--join-token", token]);
    }
    spawn(&args, &Path::new(dir).join("log"))
}

/// The agent protocol as the host whose agent data dir is `dir`.
fn host_client(dir: &str) -> reqwest::Client {
    nubis_pki::HostCredentials::load(&Path::new(dir).join("agent"))
        .expect("readable credentials")
        .expect("the host joined")
        .controller_client(reqwest::Client::builder().timeout(Duration::from_secs(30)))
        .expect("client")
}

/// The agent protocol with TLS that trusts the cluster CA but shows no
/// client certificate.
fn anonymous_client(token: &str) -> reqwest::Client {
    let token = nubis_pki::JoinToken::parse(token).unwrap();
    let config = nubis_pki::tls::cluster_client_config(
        nubis_pki::tls::Trust::Pinned(token.ca_fingerprint().to_owned()),
        nubis_pki::Role::Controller,
        None,
    )
    .unwrap();
    nubis_pki::tls::reqwest_client(config, reqwest::Client::builder()).unwrap()
}

async fn status_of(r: reqwest::RequestBuilder) -> StatusCode {
    r.send().await.expect("an answer").status()
}

#[test]
fn hosts_have_their_own_credentials() {
    run_in_netns("hostcred", || async {
        let controller_dir = tempfile::tempdir().unwrap();
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let c = controller_dir.path().to_string_lossy().into_owned();
        let a = a_dir.path().to_string_lossy().into_owned();
        let b = b_dir.path().to_string_lossy().into_owned();
        let (_reap_a, _reap_b) = (Reaper(a.clone()), Reaper(b.clone()));
        let _controller = spawn(
            &["controller", "--data-dir", &c],
            &controller_dir.path().join("log"),
        );
        let logs = || {
            let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
            format!(
                "--- controller\n{}\n--- agent a\n{}\n--- agent b\n{}",
                read(&controller_dir.path().join("log")),
                read(&a_dir.path().join("log")),
                read(&b_dir.path().join("log")),
            )
        };
        let out = Command::new(nubis_bin())
            .args(["admin", "create-user", "olga", "--admin", "--password"])
            .arg("olga-password")
            .args(["--data-dir", &c])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let http = reqwest::Client::new();
        support::wait_for_api(&http, API, Duration::from_secs(30)).await;
        let login: Value = http
            .post(format!("{API}/v1/tokens"))
            .json(&json!({"name": "olga", "password": "olga-password"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().expect("a login token").to_owned();
        let api = |m: Method, p: &str| http.request(m, format!("{API}{p}")).bearer_auth(&token);
        let host_id = |name: &'static str| {
            let api = &api;
            async move {
                let hosts: Value = api(Method::GET, "/v1/hosts")
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                hosts
                    .as_array()?
                    .iter()
                    .find(|h| h["name"] == name)
                    .map(|h| h["id"].as_str().unwrap().to_owned())
            }
        };

        // Host A joins with its token; a server is placed on it.
        let token_a = support::join::join_token(&c, None);
        let agent_a = agent("host-a", &a, A_LISTEN, "8775", Some(&token_a));
        let a_id = support::wait_for("host-a to join", Duration::from_secs(60), || {
            host_id("host-a")
        })
        .await;
        let cfg = controller_dir.path().join("cli");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("token"), &token).unwrap();
        upload_tiny_image_to(API, &cfg);
        let server: Value = api(Method::POST, "/v1/servers")
            .json(&json!({"name": "s", "image": "tiny", "flavor": "tiny"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let server = server["id"].as_str().expect("server id").to_owned();
        let console_log = |server: String| {
            let api = &api;
            async move {
                api(Method::GET, &format!("/v1/servers/{server}/console-log"))
                    .send()
                    .await
                    .unwrap()
            }
        };
        // Positive control: the controller reads the console log from host
        // A's agent over mutual TLS.
        support::wait_for("console output through host A's agent", BOOT, || async {
            let r = console_log(server.clone()).await;
            assert_ne!(r.status(), StatusCode::BAD_GATEWAY, "{}", logs());
            let text = r.text().await.ok()?;
            (!text.is_empty()).then_some(())
        })
        .await;

        // A used join token is refused; so is one with a made-up secret.
        let anonymous = anonymous_client(&token_a);
        let register_b = json!({
            "name": "host-b", "url": format!("https://{B_LISTEN}"),
            "vcpus": 1, "memory_mib": 512, "disk_gib": 1, "accel": "tcg"
        });
        let (_, csr) = nubis_pki::ca::new_host_key().unwrap();
        let used = nubis_pki::JoinToken::parse(&token_a).unwrap();
        let forged_secret = "0".repeat(64);
        for (what, secret) in [("used", used.secret()), ("made-up", forged_secret.as_str())] {
            let r = anonymous
                .post(format!("{CLUSTER}/v1/agent/join"))
                .json(&json!({"secret": secret, "csr_pem": csr, "host": register_b}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what} join token");
        }
        assert!(
            host_id("host-b").await.is_none(),
            "a refused join registers nothing"
        );

        // Host B joins with its own token (positive control of the above).
        let token_b = support::join::join_token(&c, None);
        let mut agent_b = agent("host-b", &b, B_LISTEN, "8776", Some(&token_b));
        let b_id = support::wait_for("host-b to join", Duration::from_secs(60), || {
            host_id("host-b")
        })
        .await;
        assert_ne!(a_id, b_id);
        let as_b = host_client(&b);
        let at = |p: String| format!("{CLUSTER}{p}");
        let empty_report = json!({"instances": []});

        // B reads and reports for itself...
        let own = status_of(as_b.get(at(format!("/v1/agent/hosts/{b_id}/desired")))).await;
        assert_eq!(own, StatusCode::OK);
        let own = status_of(
            as_b.put(at(format!("/v1/agent/hosts/{b_id}/report")))
                .json(&empty_report),
        )
        .await;
        assert_eq!(own, StatusCode::NO_CONTENT);
        // ...but not for A: its desired state (user data, keys) stays A's.
        let theirs = status_of(as_b.get(at(format!("/v1/agent/hosts/{a_id}/desired")))).await;
        assert_eq!(theirs, StatusCode::FORBIDDEN);
        let theirs = status_of(
            as_b.put(at(format!("/v1/agent/hosts/{a_id}/report")))
                .json(&empty_report),
        )
        .await;
        assert_eq!(theirs, StatusCode::FORBIDDEN);
        // Without a client certificate nothing is served; nor over plain HTTP.
        let none = status_of(anonymous.get(at(format!("/v1/agent/hosts/{a_id}/desired")))).await;
        assert_eq!(none, StatusCode::UNAUTHORIZED);
        let plain = http
            .get(format!(
                "http://127.0.0.1:8781/v1/agent/hosts/{a_id}/desired"
            ))
            .send()
            .await;
        assert!(
            plain.as_ref().map_or(true, |r| !r.status().is_success()),
            "plain HTTP on the agent protocol: {plain:?}"
        );
        // B may not take A's name, nor give an address its certificate
        // does not name.
        let mut steal = register_b.clone();
        steal["name"] = json!("host-a");
        let r = status_of(as_b.post(at("/v1/agent/hosts".into())).json(&steal)).await;
        assert_eq!(r, StatusCode::FORBIDDEN);
        let mut elsewhere = register_b.clone();
        elsewhere["url"] = json!("https://127.0.0.9:8783");
        let r = status_of(as_b.post(at("/v1/agent/hosts".into())).json(&elsewhere)).await;
        assert_eq!(r, StatusCode::FORBIDDEN);
        let r = status_of(as_b.post(at("/v1/agent/hosts".into())).json(&register_b)).await;
        assert_eq!(r, StatusCode::OK, "positive control: B registers as itself");
        let hosts: Value = api(Method::GET, "/v1/hosts")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let a_url = hosts
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == a_id.as_str())
            .map(|h| h["url"].clone());
        assert_eq!(a_url, Some(json!(format!("https://{A_LISTEN}"))));

        // B's agent takes over A's address: the controller, calling A at the
        // URL it has for A, meets B's certificate and refuses it.
        drop(agent_a);
        drop(agent_b);
        agent_b = agent("host-b", &b, A_LISTEN, "8776", None);
        support::wait_for(
            "B's agent at A's address",
            Duration::from_secs(60),
            || async { std::net::TcpStream::connect(A_LISTEN).ok().map(|_| ()) },
        )
        .await;
        let r = console_log(server.clone()).await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}\n{}", logs());
        assert!(
            !body.contains("Linux"),
            "no console output from an impostor: {body}"
        );

        // Positive control: A's own agent back there (no token needed: it
        // kept its certificate) serves the log again.
        drop(agent_b);
        support::wait_for(
            "A's address to be free",
            Duration::from_secs(30),
            || async { std::net::TcpStream::connect(A_LISTEN).err().map(|_| ()) },
        )
        .await;
        let _agent_a = agent("host-a", &a, A_LISTEN, "8775", None);
        support::wait_for(
            "console output through host A's agent again",
            Duration::from_secs(60),
            || async {
                let r = console_log(server.clone()).await;
                if r.status() != StatusCode::OK {
                    return None;
                }
                let text = r.text().await.ok()?;
                (!text.is_empty()).then_some(())
            },
        )
        .await;
    });
}

/// The API and portal over HTTPS: the CLI and reqwest reach it when told to
/// trust its (self-signed) certificate, not otherwise, and the portal's
/// cookies are `Secure`.
#[test]
fn the_api_is_served_over_https() {
    run_in_netns("https-api", || async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_string_lossy().into_owned();
        let cert = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        let (cert_path, key_path) = (dir.path().join("api.crt"), dir.path().join("api.key"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        let _controller = spawn(
            &[
                "controller",
                "--data-dir",
                &d,
                "--tls-cert",
                cert_path.to_str().unwrap(),
                "--tls-key",
                key_path.to_str().unwrap(),
            ],
            &dir.path().join("log"),
        );
        let url = "https://127.0.0.1:8780";
        let trusting = reqwest::Client::builder()
            .tls_certs_only(
                reqwest::Certificate::from_pem_bundle(cert.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        support::wait_for("the HTTPS API", Duration::from_secs(30), || async {
            trusting
                .get(format!("{url}/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        // Plain HTTP on that port gets no API answer; a client that does not
        // trust the certificate gets no connection.
        let plain = reqwest::Client::new()
            .get("http://127.0.0.1:8780/healthz")
            .send()
            .await;
        assert!(
            plain.as_ref().map_or(true, |r| !r.status().is_success()),
            "{plain:?}"
        );
        let untrusting = reqwest::Client::new()
            .get(format!("{url}/healthz"))
            .send()
            .await;
        assert!(untrusting.is_err(), "{untrusting:?}");

        // The CLI, told to trust the certificate, works over HTTPS.
        let cli_dir = dir.path().join("cli");
        std::fs::create_dir_all(&cli_dir).unwrap();
        let cli = |args: &[&str], ca: Option<&Path>| {
            let mut cmd = Command::new(nubis_bin());
            cmd.args(["--url", url])
                .args(args)
                .env("NUBIS_CONFIG_DIR", &cli_dir);
            cmd.env("NUBIS_PASSWORD", "pat-password-1");
            if let Some(ca) = ca {
                cmd.arg("--ca-cert").arg(ca);
            }
            cmd.output().unwrap()
        };
        let out = Command::new(nubis_bin())
            .args([
                "admin",
                "create-user",
                "pat",
                "--password",
                "pat-password-1",
                "--data-dir",
                &d,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = cli(&["login", "pat"], None);
        assert!(
            !out.status.success(),
            "without --ca-cert the CLI refuses the certificate"
        );
        let out = cli(&["login", "pat"], Some(&cert_path));
        assert!(
            out.status.success(),
            "login over HTTPS: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = cli(&["flavor", "list"], Some(&cert_path));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("tiny"));

        // The portal's login sets a Secure session cookie.
        let no_redirects = reqwest::Client::builder()
            .tls_certs_only(
                reqwest::Certificate::from_pem_bundle(cert.cert.pem().as_bytes()).unwrap(),
            )
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = no_redirects
            .get(format!("{url}/login"))
            .send()
            .await
            .unwrap();
        let cookies: Vec<String> = page
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let form = page.text().await.unwrap();
        let csrf = form
            .split("name=\"_csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a CSRF field on the login form");
        let cookie_header: Vec<&str> = cookies
            .iter()
            .map(|c| c.split(';').next().unwrap())
            .collect();
        let r = no_redirects
            .post(format!("{url}/login"))
            .header(reqwest::header::COOKIE, cookie_header.join("; "))
            .header(reqwest::header::ORIGIN, url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!("name=pat&password=pat-password-1&_csrf={csrf}"))
            .send()
            .await
            .unwrap();
        let set: Vec<String> = r
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let session = set
            .iter()
            .find(|c| c.starts_with("nubis_session=") && !c.starts_with("nubis_session=;"))
            .unwrap_or_else(|| panic!("a session cookie after login ({}): {set:?}", r.status()));
        assert!(session.contains("; Secure"), "{session}");
        assert!(
            cookies.iter().all(|c| c.contains("; Secure")),
            "{cookies:?}"
        );
    });
}
