//! Nova servers through the real clients, with ONE server booted (TCG is
//! slow): the image, key pair and network are made through `/v1` (Glance
//! and Neutron are other sessions' work), then openstacksdk creates the
//! server the `nova boot --nic net-id=,v4-fixed-ip= --key-name --user-data
//! --config-drive True` way, SSH logs in with the key at the fixed IP, and
//! both `openstack` clients list, show, read the console and power it.
//! Also over HTTP: another tenant gets 404 for everything, bad creates get
//! Nova's error shape and create nothing, server groups.
//!
//! Without the clients the test skips with a note; under CI it fails.

mod support;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::ssh_stdout;
use support::netns::run_in_netns;

const BOOT: Duration = Duration::from_secs(300);
const DEBIAN_OPENSTACK: &str = "/usr/bin/openstack";
const VENV_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openstack-venv.sh");
const ALICE: (&str, &str) = ("alice", "alice-secret-1");
const BOB: (&str, &str) = ("bob", "bob-secret-12");
const FIXED_IP: &str = "10.78.0.50";

/// Skips (notes why) or, under CI, fails.
fn missing(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} (required in CI: scripts/install-deps.sh and scripts/openstack-venv.sh)"
    );
    eprintln!("note: {what}; skipping");
}

/// (Debian's `openstack`, PyPI's `openstack`, PyPI's python) or `None`.
fn clients() -> Option<(PathBuf, PathBuf, PathBuf)> {
    if !Path::new(DEBIAN_OPENSTACK).exists() {
        missing("Debian's python3-openstackclient is not installed");
        return None;
    }
    let out = Command::new(VENV_SCRIPT)
        .output()
        .expect("running scripts/openstack-venv.sh");
    if !out.status.success() {
        missing(&format!(
            "the PyPI OpenStack clients could not be installed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    let pypi = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let python = pypi.with_file_name("python");
    Some((DEBIAN_OPENSTACK.into(), pypi, python))
}

/// Runs a client with only `clouds.yaml` for configuration.
fn run(program: &Path, args: &[&str], clouds: &Path, home: &Path) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("HOME", home);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OS_") && key != "OS_CLIENT_CONFIG_FILE" {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("running an OpenStack client")
}

struct Env {
    clouds: PathBuf,
    home: PathBuf,
}

impl Env {
    /// `openstack --os-cloud alice ARGS`, whatever its outcome.
    fn os(&self, client: &Path, args: &[&str]) -> Output {
        let mut all = vec!["--os-cloud", "alice"];
        all.extend_from_slice(args);
        run(client, &all, &self.clouds, &self.home)
    }

    /// Same, which must succeed; its stdout.
    fn os_ok(&self, client: &Path, args: &[&str]) -> String {
        let out = self.os(client, args);
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}{}",
            client.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A Python snippet with openstacksdk (cloud `alice` as `conn`); its
    /// stdout as JSON.
    fn sdk(&self, python: &Path, snippet: &str) -> Value {
        let code = format!(
            "import base64, json, openstack\nconn = openstack.connect(cloud='alice')\n{snippet}"
        );
        let out = run(python, &["-c", &code], &self.clouds, &self.home);
        assert!(
            out.status.success(),
            "openstacksdk snippet failed: {}\n{snippet}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the snippet prints JSON")
    }
}

fn write_clouds_yaml(dir: &Path, url: &str) -> PathBuf {
    let (user, password) = ALICE;
    let path = dir.join("clouds.yaml");
    std::fs::write(
        &path,
        format!(
            "clouds:\n  {user}:\n    auth:\n      auth_url: {url}/identity\n      username: {user}\n      \
             password: {password}\n      project_name: {user}\n      user_domain_name: Default\n      \
             project_domain_name: Default\n    region_name: RegionOne\n    identity_api_version: 3\n"
        ),
    )
    .expect("writing clouds.yaml");
    path
}

/// A Nova call with `X-Auth-Token`: status and JSON body.
async fn nova(
    cloud: &Cloud,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = cloud
        .http()
        .request(method, format!("{}/compute/v2.1{path}", cloud.url))
        .header("X-Auth-Token", token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("Nova request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The id of the `/v1` object named `name` in `GET path`.
async fn id_named(cloud: &Cloud, path: &str, name: &str) -> String {
    let (s, list) = cloud.call(Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list.as_array()
        .and_then(|l| l.iter().find(|o| o["name"] == name))
        .and_then(|o| o["id"].as_str())
        .unwrap_or_else(|| panic!("no {name} in {path}: {list}"))
        .to_owned()
}

#[test]
fn openstack_clients_boot_and_drive_a_server() {
    let Some((debian, pypi, python)) = clients() else {
        return;
    };
    run_in_netns("osnova", move || async move {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login(BOB.0, BOB.1).await;
        let bob = cloud.token.clone().expect("bob's token");
        cloud.register_and_login(ALICE.0, ALICE.1).await;
        let alice = cloud.token.clone().expect("alice's token");
        cloud.upload_tiny_image();
        let (s, net) = cloud
            .call(
                Method::POST,
                "/v1/networks",
                Some(json!({"name": "lan", "cidr": "10.78.0.0/24"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{net}");
        let net = net["id"].as_str().expect("network id").to_owned();
        let image = id_named(&cloud, "/v1/images", "tiny").await;
        let flavor = id_named(&cloud, "/v1/flavors", "tiny").await;
        let key = cloud.keypair("k1").await;
        let env = Env {
            clouds: write_clouds_yaml(cloud.data_path(), &cloud.url),
            home: cloud.data_path().join("home"),
        };
        std::fs::create_dir_all(&env.home).unwrap();

        // Bad creates: Nova's error shape, nothing created.
        let boot = |flavor: &str, user_data: &str, ip: &str| {
            json!({"server": {"name": "bad", "flavorRef": flavor, "imageRef": image,
                "networks": [{"uuid": net, "fixed_ip": ip}], "user_data": user_data}})
        };
        let ok_data = base64::engine::general_purpose::STANDARD.encode("x");
        for (body, needle) in [
            (boot("no-such-flavor", &ok_data, "10.78.0.60"), "flavor"),
            (boot(&flavor, "not base64!", "10.78.0.60"), "user_data"),
            (boot(&flavor, &ok_data, "10.99.0.60"), "10.99.0.60"),
        ] {
            let (s, b) = nova(&cloud, &alice, Method::POST, "/servers", Some(body)).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
            let message = b["badRequest"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "{b}");
        }
        let (s, list) = nova(&cloud, &alice, Method::GET, "/servers", None).await;
        assert_eq!(s, StatusCode::OK, "{list}");
        assert_eq!(list["servers"], json!([]), "a refused create made nothing");

        // Server groups (Nubis's, in Nova's shape).
        let (s, g) = nova(
            &cloud,
            &alice,
            Method::POST,
            "/os-server-groups",
            Some(json!({"server_group": {"name": "spread", "policies": ["anti-affinity"]}})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{g}");
        assert_eq!(g["server_group"]["policies"], json!(["anti-affinity"]));
        let group = g["server_group"]["id"].as_str().unwrap().to_owned();
        let (s, _) = nova(
            &cloud,
            &bob,
            Method::GET,
            &format!("/os-server-groups/{group}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's group");

        // The nova-boot create, through openstacksdk (PyPI).
        let script = "#!/bin/sh\necho user-data-ran > /tmp/ud\n";
        let user_data = base64::engine::general_purpose::STANDARD.encode(script);
        let created = env.sdk(
            &python,
            &format!(
                "s = conn.compute.create_server(name='web', flavor_id='{flavor}', image_id='{image}',\n\
                 networks=[{{'uuid': '{net}', 'fixed_ip': '{FIXED_IP}'}}], key_name='k1',\n\
                 user_data='{user_data}', config_drive=True,\n\
                 scheduler_hints={{'group': '{group}'}})\n\
                 s = conn.compute.wait_for_server(s, status='ACTIVE', wait=600)\n\
                 print(json.dumps({{'id': s.id, 'status': s.status, 'addresses': s.addresses,\n\
                 'config_drive': s.has_config_drive, 'key_name': s.key_name}}))"
            ),
        );
        let id = created["id"].as_str().expect("server id").to_owned();
        assert_eq!(created["status"], "ACTIVE", "{created}");
        let lan = &created["addresses"]["lan"][0];
        assert_eq!(lan["addr"], FIXED_IP, "{created}");
        assert_eq!(lan["OS-EXT-IPS:type"], "fixed", "{created}");
        assert!(
            lan["OS-EXT-IPS-MAC:mac_addr"].as_str().is_some(),
            "{created}"
        );
        assert_eq!(created["key_name"], "k1", "{created}");

        // It joined the group of its scheduler hint.
        let (_, g) = nova(
            &cloud,
            &alice,
            Method::GET,
            &format!("/os-server-groups/{group}"),
            None,
        )
        .await;
        assert_eq!(g["server_group"]["members"], json!([id]), "{g}");

        // In the guest: the key pair's key lets us in, user data ran.
        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        cloud
            .wait_console(&id, "nubis-tiny: user-data exit 0", BOOT)
            .await;
        let out = ssh_stdout(&key, FIXED_IP, "hostname; cat /tmp/ud");
        assert_eq!(out, "web\nuser-data-ran\n");

        // Another tenant: 404 for show, actions, delete; not in its list.
        for (method, path, body) in [
            (Method::GET, format!("/servers/{id}"), None),
            (
                Method::POST,
                format!("/servers/{id}/action"),
                Some(json!({"os-stop": null})),
            ),
            (Method::DELETE, format!("/servers/{id}"), None),
        ] {
            let (s, b) = nova(&cloud, &bob, method, &path, body).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {b}");
            assert_eq!(b["itemNotFound"]["code"], 404, "{b}");
        }
        let (_, theirs) = nova(&cloud, &bob, Method::GET, "/servers/detail", None).await;
        assert_eq!(theirs["servers"], json!([]), "{theirs}");
        // A positive control: the owner sees it, in full.
        let (s, b) = nova(&cloud, &alice, Method::GET, &format!("/servers/{id}"), None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let server = &b["server"];
        for (k, v) in [
            ("status", json!("ACTIVE")),
            ("OS-EXT-STS:vm_state", json!("active")),
            ("OS-EXT-STS:power_state", json!(1)),
            ("OS-EXT-AZ:availability_zone", json!("nova")),
            ("metadata", json!({})),
            ("security_groups", json!([{"name": "default"}])),
            ("config_drive", json!("True")),
            (
                "image",
                json!({"id": image, "links": server["image"]["links"]}),
            ),
        ] {
            assert_eq!(server[k], v, "{k}: {server}");
        }
        assert_eq!(server["flavor"]["id"], flavor.as_str(), "{server}");
        assert_eq!(
            server["hostId"].as_str().map(str::len),
            Some(56),
            "{server}"
        );
        // Filters and pagination.
        let (_, b) = nova(
            &cloud,
            &alice,
            Method::GET,
            "/servers?name=^we&status=ACTIVE",
            None,
        )
        .await;
        assert_eq!(b["servers"][0]["id"], id.as_str(), "{b}");
        let (_, b) = nova(&cloud, &alice, Method::GET, "/servers?name=nomatch", None).await;
        assert_eq!(b["servers"], json!([]), "{b}");
        let (_, b) = nova(&cloud, &alice, Method::GET, "/servers?status=SHUTOFF", None).await;
        assert_eq!(b["servers"], json!([]), "{b}");
        let (_, b) = nova(
            &cloud,
            &alice,
            Method::GET,
            &format!("/servers?marker={id}"),
            None,
        )
        .await;
        assert_eq!(b["servers"], json!([]), "{b}");
        let (s, b) = nova(&cloud, &alice, Method::GET, "/servers?marker=nope", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        // Nova refuses to start an active server.
        let (s, b) = nova(
            &cloud,
            &alice,
            Method::POST,
            &format!("/servers/{id}/action"),
            Some(json!({"os-start": null})),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert!(b["conflictingRequest"]["message"].is_string(), "{b}");
        let (s, b) = nova(
            &cloud,
            &alice,
            Method::POST,
            &format!("/servers/{id}/action"),
            Some(json!({"createImage": {"name": "snap"}})),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{b}");

        // Both clients' reads.
        for (label, client) in [("pypi", &pypi), ("debian", &debian)] {
            for args in [
                vec!["server", "list", "-f", "json"],
                vec!["server", "show", "web", "-f", "json"],
                vec!["console", "log", "show", "web"],
                vec!["console", "url", "show", "web", "-f", "json"],
            ] {
                let out = env.os(client, &args);
                let stdout = String::from_utf8_lossy(&out.stdout);
                eprintln!(
                    "[{label}] {args:?}: {} stdout {} stderr {}",
                    out.status,
                    stdout.chars().take(400).collect::<String>(),
                    String::from_utf8_lossy(&out.stderr)
                        .chars()
                        .take(600)
                        .collect::<String>()
                );
                if out.status.success() {
                    let expect = match args[1] {
                        "log" => "nubis-tiny",
                        "url" => "/console/",
                        _ => FIXED_IP,
                    };
                    assert!(stdout.contains(expect), "[{label}] {args:?}: {stdout}");
                } else {
                    // Only Debian's 6.0 may fail, and only for lack of an
                    // image endpoint (recorded in docs/openstack.md).
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    assert!(
                        label == "debian" && stderr.to_lowercase().contains("image"),
                        "[{label}] {args:?}: {stderr}"
                    );
                }
            }
        }
        let output = env.sdk(
            &python,
            &format!("print(json.dumps(conn.compute.get_server_console_output('{id}', length=5)))"),
        );
        let output = output["output"].as_str().expect("console output");
        assert!(
            output.lines().count() <= 5 && !output.is_empty(),
            "{output}"
        );

        // Power: stop (sdk), a second stop is 409, start (Debian), stop (PyPI),
        // start (sdk), reboot --hard --wait (PyPI), reboot --wait (Debian).
        let stopped = env.sdk(
            &python,
            &format!(
                "s = conn.compute.get_server('{id}')\nconn.compute.stop_server(s)\n\
                 s = conn.compute.wait_for_server(s, status='SHUTOFF', wait=300)\n\
                 print(json.dumps({{'status': s.status, 'power': s.power_state}}))"
            ),
        );
        assert_eq!(stopped["status"], "SHUTOFF", "{stopped}");
        let (s, b) = nova(
            &cloud,
            &alice,
            Method::POST,
            &format!("/servers/{id}/action"),
            Some(json!({"os-stop": null})),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        let wait = |status: &str| {
            format!(
                "s = conn.compute.wait_for_server(conn.compute.get_server('{id}'), status='{status}', wait=300)\n\
                 print(json.dumps({{'status': s.status}}))"
            )
        };
        env.os_ok(&debian, &["server", "start", "web"]);
        assert_eq!(env.sdk(&python, &wait("ACTIVE"))["status"], "ACTIVE");
        env.os_ok(&pypi, &["server", "stop", "web"]);
        assert_eq!(env.sdk(&python, &wait("SHUTOFF"))["status"], "SHUTOFF");
        let started = env.sdk(
            &python,
            &format!(
                "conn.compute.start_server('{id}')\n\
                 s = conn.compute.wait_for_server(conn.compute.get_server('{id}'), status='ACTIVE', wait=300)\n\
                 print(json.dumps({{'status': s.status}}))"
            ),
        );
        assert_eq!(started["status"], "ACTIVE", "{started}");
        env.os_ok(&pypi, &["server", "reboot", "--hard", "--wait", "web"]);
        let out = env.os(&debian, &["server", "reboot", "--wait", "web"]);
        eprintln!("[debian] server reboot --wait: {out:?}");
        assert!(
            out.status.success(),
            "[debian] server reboot --wait: {out:?}"
        );
        let (_, b) = nova(&cloud, &alice, Method::GET, &format!("/servers/{id}"), None).await;
        assert_eq!(b["server"]["status"], "ACTIVE", "{b}");

        // Delete --wait: gone (404) afterwards.
        env.os_ok(&pypi, &["server", "delete", "--wait", "web"]);
        let (s, b) = nova(&cloud, &alice, Method::GET, &format!("/servers/{id}"), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        let (s, _) = nova(
            &cloud,
            &alice,
            Method::DELETE,
            &format!("/os-server-groups/{group}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    });
}
