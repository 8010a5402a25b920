//! Floating IPs end to end: an "outside" namespace, joined to the host's
//! namespace by a veth pair, reaches a server through its floating IP (and
//! loses it when the address is disassociated).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use support::cloud::Cloud;
use support::netns::{run_in_netns, NetNs};

const BOOT: Duration = Duration::from_secs(180);

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip");
    assert!(status.success(), "ip {args:?}");
}

/// Runs `ssh` from the outside namespace; returns stdout on success.
fn ssh_from(outside: &str, key: &std::path::Path, to: &str, command: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", outside, "ssh", "-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("root@{to}"))
        .arg(command)
        .output()
        .expect("ssh");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ping_from(outside: &str, to: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", outside, "ping", "-c", "1", "-W", "1", to])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ping")
        .success()
}

#[test]
fn floating_ip_reaches_the_server_from_outside() {
    // The outside world: its own namespace, linked to the host's by a veth.
    let outside = NetNs::new("out");
    let out_name = outside.name.clone();
    run_in_netns("fip", move || async move {
        ip(&[
            "link", "add", "fip-host", "type", "veth", "peer", "name", "fip-out", "netns",
            &out_name,
        ]);
        ip(&["addr", "add", "203.0.113.1/24", "dev", "fip-host"]);
        ip(&["link", "set", "fip-host", "up"]);
        ip(&[
            "-n",
            &out_name,
            "addr",
            "add",
            "203.0.113.254/24",
            "dev",
            "fip-out",
        ]);
        ip(&["-n", &out_name, "link", "set", "fip-out", "up"]);

        let mut cloud = Cloud::start().await;
        cloud.register_and_login("frank", "frank-password").await; // first user: admin
        cloud.upload_tiny_image();
        let (s, pool) = cloud
            .call(
                Method::POST,
                "/v1/floating-ip-pools",
                Some(json!({"name": "public", "first": "203.0.113.10", "last": "203.0.113.20"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{pool}");
        let (s, kp) = cloud
            .call(Method::POST, "/v1/keypairs", Some(json!({"name": "k"})))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let key = cloud.data_path().join("k.pem");
        std::fs::write(&key, kp["private_key"].as_str().unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (s, server) = cloud
            .call(
                Method::POST,
                "/v1/servers",
                Some(json!({"name": "pub", "image": "tiny", "flavor": "tiny", "key_name": "k"})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{server}");
        let id = server["id"].as_str().unwrap().to_owned();
        let fixed = server["addresses"][0]["ip"].as_str().unwrap().to_owned();

        let (s, fip) = cloud
            .call(Method::POST, "/v1/floating-ips", Some(json!({})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{fip}");
        assert_eq!(fip["ip"], "203.0.113.10");
        let fip_id = fip["id"].as_str().unwrap().to_owned();
        let (s, assoc) = cloud
            .call(
                Method::PATCH,
                &format!("/v1/floating-ips/{fip_id}"),
                Some(json!({"server": "pub"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{assoc}");
        assert_eq!(assoc["fixed_ip"], fixed.as_str());
        assert_eq!(assoc["server"], id.as_str());

        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        let hostname = support::wait_for("ssh through the floating IP", BOOT, || async {
            ssh_from(&out_name, &key, "203.0.113.10", "hostname")
        })
        .await;
        assert_eq!(hostname.trim(), "pub");
        assert!(
            !ping_from(&out_name, &fixed),
            "the private address is not reachable from outside"
        );

        let (s, b) = cloud
            .call(
                Method::PATCH,
                &format!("/v1/floating-ips/{fip_id}"),
                Some(json!({"server": null})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert!(b["server"].is_null());
        support::wait_for("the floating IP to stop answering", BOOT, || async {
            (!ping_from(&out_name, "203.0.113.10")).then_some(())
        })
        .await;
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/floating-ips/{fip_id}"), None)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    });
    drop(outside);
}
