//! Issue 12's whole flow through the real clients, unmodified, against a
//! `nubis up` in a network namespace: identity, a flavor, the tiny guest's
//! kernel, initrd and disk through Glance, a key pair, a network and
//! subnet through Neutron, a security group rule, then the seed's
//! `nova boot` form (`server create --flavor --image --nic
//! net-id=X,v4-fixed-ip=Y --key-name --user-data --config-drive True
//! --wait`), SSH into it with the key at that address, list/show/console,
//! stop/start/reboot, a floating IP, limits and quotas, and delete. Then
//! another tenant's token gets 404 for that server, image, network and port
//! on every API, and a bad request changes nothing. Once per client
//! (Debian's and PyPI's), one boot each.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::ssh_stdout;
use support::netns::run_in_netns;
use support::openstack::{admin_with_public_pool, clients, field, write_clouds_yaml, Session};

const BOOT: Duration = Duration::from_secs(300);
const ADMIN: (&str, &str) = ("root", "admin-secret-1");
const ALICE: (&str, &str) = ("alice", "alice-secret-1");
const BOB: (&str, &str) = ("bob", "bob-secret-12");

/// The `id` of a `-f json` record.
fn id_of(record: &Value) -> String {
    field(record, "id", "Field", "Value")
        .as_str()
        .unwrap_or_else(|| panic!("no id in {record}"))
        .to_owned()
}

/// Names in a `-f json` list.
fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["Name"].as_str().map(str::to_owned))
        .collect()
}

/// `openstack server <action> --wait NAME`; Debian's 6.0 has no `--wait`
/// on stop and start: then the status is polled with `server show`.
async fn power(os: &Session<'_>, action: &str, name: &str, want: &str) {
    let out = os.try_openstack("alice", &["server", action, "--wait", name]);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("unrecognized arguments"),
            "[{}] server {action} --wait: {stderr}",
            os.client.label
        );
        os.ok("alice", &["server", action, name]);
    }
    for _ in 0..300 {
        let s = os.json("alice", &["server", "show", name]);
        if field(&s, "status", "Field", "Value") == want {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("[{}] {name} never became {want}", os.client.label);
}

/// A raw call on an OpenStack route with `token`.
async fn raw(
    cloud: &Cloud,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = cloud
        .http()
        .request(method, format!("{}{path}", cloud.url))
        .header("X-Auth-Token", token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.expect("the controller answers");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn the_openstack_clients_run_the_whole_flow_unmodified() {
    let Some(clients) = clients() else {
        return;
    };
    run_in_netns("osflow", move || async move {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login(BOB.0, BOB.1).await;
        let bob = cloud.token.clone().expect("bob's token");
        admin_with_public_pool(&mut cloud, ADMIN).await;
        cloud.register_and_login(ALICE.0, ALICE.1).await;
        let alice = cloud.token.clone().expect("alice's token");
        let clouds = write_clouds_yaml(cloud.data_path(), &cloud.url, &[ADMIN, ALICE]);
        let home = cloud.data_path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let tiny = support::tiny_image_dir();
        let file = |f: &str| tiny.join(f).to_string_lossy().into_owned();
        let cmdline = std::fs::read_to_string(tiny.join("cmdline.txt")).unwrap();
        let user_data = cloud.data_path().join("init.sh");
        std::fs::write(&user_data, "#!/bin/sh\necho user-data-ran > /tmp/ud\n").unwrap();
        let user_data = user_data.to_string_lossy().into_owned();

        for (n, client) in clients.iter().enumerate() {
            let label = client.label;
            let os = Session {
                client,
                clouds: clouds.clone(),
                home: home.clone(),
            };
            // Identity and the catalog.
            let token = os.json("alice", &["token", "issue"]);
            assert!(token["id"].as_str().is_some(), "[{label}] {token}");
            let catalog = os.json("alice", &["catalog", "list"]);
            let types: Vec<&str> = catalog
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["Type"].as_str())
                .collect();
            for t in ["identity", "compute", "image", "network"] {
                assert!(types.contains(&t), "[{label}] {t} in {catalog}");
            }
            // A flavor (admins only).
            assert!(names(&os.json("alice", &["flavor", "list"])).contains(&"tiny".to_owned()));
            let flavor = format!("fl-{label}");
            os.json(
                "root",
                &[
                    "flavor", "create", "--vcpus", "1", "--ram", "128", "--disk", "1", &flavor,
                ],
            );
            let denied = os.fails(
                "alice",
                &[
                    "flavor", "create", "--vcpus", "1", "--ram", "128", "--disk", "1", "nope",
                ],
            );
            assert!(denied.contains("403"), "[{label}] {denied}");

            // The kernel/initrd pair, then the disk that boots them.
            let kernel = id_of(&os.json(
                "alice",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "aki",
                    "--container-format",
                    "aki",
                    "--file",
                    &file("vmlinuz"),
                    &format!("k-{label}"),
                ],
            ));
            let initrd = id_of(&os.json(
                "alice",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "ari",
                    "--container-format",
                    "ari",
                    "--file",
                    &file("initrd.img"),
                    &format!("r-{label}"),
                ],
            ));
            let image = format!("img-{label}");
            os.json(
                "alice",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "qcow2",
                    "--container-format",
                    "bare",
                    "--file",
                    &file("disk.qcow2"),
                    "--property",
                    &format!("kernel_id={kernel}"),
                    "--property",
                    &format!("ramdisk_id={initrd}"),
                    "--property",
                    &format!("os_command_line={}", cmdline.trim()),
                    &image,
                ],
            );
            assert!(
                names(&os.json("alice", &["image", "list"])).contains(&image),
                "[{label}]"
            );

            // A key pair from a public key.
            let key = cloud.data_path().join(format!("key-{label}"));
            let _ = std::fs::remove_file(&key);
            let made = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key)
                .status()
                .unwrap();
            assert!(made.success());
            let public = format!("{}.pub", key.display());
            os.json(
                "alice",
                &[
                    "keypair",
                    "create",
                    "--public-key",
                    &public,
                    &format!("key-{label}"),
                ],
            );

            // A network with its subnet, and a group that lets SSH in.
            let net = format!("net-{label}");
            let net_id = id_of(&os.json("alice", &["network", "create", &net]));
            let ip = format!("10.81.{n}.50");
            os.json(
                "alice",
                &[
                    "subnet",
                    "create",
                    "--network",
                    &net,
                    "--subnet-range",
                    &format!("10.81.{n}.0/24"),
                    &format!("sub-{label}"),
                ],
            );
            let group = format!("ssh-{label}");
            os.json("alice", &["security", "group", "create", &group]);
            os.json(
                "alice",
                &[
                    "security",
                    "group",
                    "rule",
                    "create",
                    "--protocol",
                    "tcp",
                    "--dst-port",
                    "22",
                    &group,
                ],
            );

            // The seed's nova boot.
            let name = format!("web-{label}");
            let server = os.json(
                "alice",
                &[
                    "server",
                    "create",
                    "--flavor",
                    &flavor,
                    "--image",
                    &image,
                    "--nic",
                    &format!("net-id={net_id},v4-fixed-ip={ip}"),
                    "--key-name",
                    &format!("key-{label}"),
                    "--user-data",
                    &user_data,
                    "--config-drive",
                    "True",
                    "--security-group",
                    &group,
                    "--wait",
                    &name,
                ],
            );
            assert_eq!(
                field(&server, "status", "Field", "Value"),
                "ACTIVE",
                "[{label}] {server}"
            );
            let id = id_of(&server);
            cloud
                .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
                .await;
            cloud
                .wait_console(&id, "nubis-tiny: user-data exit 0", BOOT)
                .await;
            let out = ssh_stdout(&key, &ip, "hostname; cat /tmp/ud");
            assert_eq!(out, format!("{name}\nuser-data-ran\n"), "[{label}]");

            assert!(
                names(&os.json("alice", &["server", "list"])).contains(&name),
                "[{label}]"
            );
            let shown = os.json("alice", &["server", "show", &name]);
            assert!(shown.to_string().contains(&ip), "[{label}] {shown}");
            let log = os.ok("alice", &["console", "log", "show", &name]);
            assert!(log.contains("nubis-tiny"), "[{label}] {log}");
            let url = os.json("alice", &["console", "url", "show", &name]);
            assert!(
                field(&url, "url", "Field", "Value")
                    .as_str()
                    .is_some_and(|u| u.starts_with("http")),
                "[{label}] {url}"
            );
            power(&os, "stop", &name, "SHUTOFF").await;
            power(&os, "start", &name, "ACTIVE").await;
            power(&os, "reboot", &name, "ACTIVE").await;

            // A floating IP, mapped to the server.
            let fip = os.json("alice", &["floating", "ip", "create", "public"]);
            let fip = field(&fip, "floating_ip_address", "Field", "Value")
                .as_str()
                .expect("address")
                .to_owned();
            os.ok("alice", &["server", "add", "floating", "ip", &name, &fip]);
            let shown = os.json("alice", &["server", "show", &name]);
            assert!(shown.to_string().contains(&fip), "[{label}] {shown}");

            let limits = os.json("alice", &["limits", "show", "--absolute"]);
            assert!(
                // Nova's names (Debian's client) or openstacksdk's (PyPI's).
                ["maxTotalInstances", "max_total_instances"]
                    .iter()
                    .any(|n| limits.to_string().contains(n)),
                "[{label}] {limits}"
            );
            let quota = os.json("alice", &["quota", "show"]);
            assert!(
                !field(&quota, "instances", "Resource", "Limit").is_null()
                    || quota.to_string().contains("instances"),
                "[{label}] {quota}"
            );

            // Another tenant: 404 on every API for this tenant's objects.
            let port = {
                let (s, ports) = raw(
                    &cloud,
                    &alice,
                    Method::GET,
                    &format!("/network/v2.0/ports?device_id={id}"),
                    None,
                )
                .await;
                assert_eq!(s, StatusCode::OK, "{ports}");
                ports["ports"][0]["id"]
                    .as_str()
                    .expect("the server's port")
                    .to_owned()
            };
            let image_id = id_of(&os.json("alice", &["image", "show", &image]));
            for path in [
                format!("/compute/v2.1/servers/{id}"),
                format!("/image/v2/images/{image_id}"),
                format!("/network/v2.0/networks/{net_id}"),
                format!("/network/v2.0/ports/{port}"),
            ] {
                let (s, b) = raw(&cloud, &bob, Method::GET, &path, None).await;
                assert_eq!(s, StatusCode::NOT_FOUND, "[{label}] bob GET {path}: {b}");
                let (s, b) = raw(&cloud, &bob, Method::DELETE, &path, None).await;
                assert!(
                    s == StatusCode::NOT_FOUND
                        || (path.contains("/ports/") && s == StatusCode::NOT_IMPLEMENTED),
                    "[{label}] bob DELETE {path}: {s} {b}"
                );
                // Positive control: the owner sees it.
                let (s, b) = raw(&cloud, &alice, Method::GET, &path, None).await;
                assert_eq!(s, StatusCode::OK, "[{label}] alice GET {path}: {b}");
            }
            for path in [
                format!("/v1/servers/{id}"),
                format!("/v1/images/{image_id}"),
                format!("/v1/networks/{net_id}"),
            ] {
                let resp = cloud
                    .http()
                    .get(format!("{}{path}", cloud.url))
                    .bearer_auth(&bob)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    resp.status(),
                    StatusCode::NOT_FOUND,
                    "[{label}] bob GET {path}"
                );
            }

            // A bad request: OpenStack's error shapes, nothing changed.
            let before = os
                .json("alice", &["server", "list"])
                .as_array()
                .unwrap()
                .len();
            let (s, b) = raw(
                &cloud,
                &alice,
                Method::POST,
                "/compute/v2.1/servers",
                Some("{\"server\": {\"name\": "),
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
            assert!(b["badRequest"]["message"].is_string(), "{b}");
            let (s, b) = raw(
                &cloud,
                &alice,
                Method::POST,
                "/network/v2.0/networks",
                Some("{\"network\": 7}"),
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
            assert!(b["NeutronError"]["message"].is_string(), "{b}");
            os.fails(
                "alice",
                &[
                    "server",
                    "create",
                    "--flavor",
                    "no-such-flavor",
                    "--image",
                    &image,
                    "--nic",
                    &format!("net-id={net_id}"),
                    "bad",
                ],
            );
            assert_eq!(
                os.json("alice", &["server", "list"])
                    .as_array()
                    .unwrap()
                    .len(),
                before,
                "[{label}] a refused create made nothing"
            );

            os.ok("alice", &["server", "delete", "--wait", &name]);
            os.fails("alice", &["server", "show", &name]);
            let (s, _) = raw(
                &cloud,
                &alice,
                Method::GET,
                &format!("/compute/v2.1/servers/{id}"),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::NOT_FOUND, "[{label}] deleted");
        }
    });
}
