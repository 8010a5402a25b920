//! Networking end to end, inside a network namespace: a server created with
//! a key pair, user data, a config drive and a fixed address on its own
//! network is reachable
//! by `ssh -i key` from the host side; its hostname is the server name, the
//! user-data script ran, its DNS name resolves; deleting it (and then the
//! network) leaves no TAP, DHCP entry, bridge or dnsmasq behind.

mod support;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::ssh_stdout;
use support::netns::run_in_netns;

const BOOT: Duration = Duration::from_secs(180);

fn links() -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn server_is_reachable_by_ssh_with_its_key_and_dns_name() {
    run_in_netns("net", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("carol", "carol-password").await;
        cloud.upload_tiny_image();

        let (s, net) = cloud
            .call(
                Method::POST,
                "/v1/networks",
                Some(json!({"name": "lan", "cidr": "10.77.0.0/24"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{net}");
        assert_eq!(net["gateway"], "10.77.0.1");
        let key = cloud.keypair("k1").await;

        let script = "#!/bin/sh\necho user-data-ran > /tmp/ud\n";
        let user_data = base64::engine::general_purpose::STANDARD.encode(script);
        let (id, server) = cloud
            .create_server(json!({
                "name": "web", "image": "tiny", "flavor": "tiny", "key_name": "k1",
                "user_data": user_data, "config_drive": true,
                "networks": [{"network": "lan", "fixed_ip": "10.77.0.50"}],
            }))
            .await;
        assert_eq!(server["addresses"][0]["ip"], "10.77.0.50");
        assert_eq!(server["dns_name"], "web.carol.nubis.internal");

        // The same fixed address again is a conflict, and creates nothing.
        let (s, err) = cloud
            .call(
                Method::POST,
                "/v1/servers",
                Some(json!({"name": "web2", "image": "tiny", "flavor": "tiny",
                            "networks": [{"network": "lan", "fixed_ip": "10.77.0.50"}]})),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{err}");
        assert!(err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10.77.0.50"));

        cloud.wait_status(&id, "running", BOOT).await;
        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        cloud
            .wait_console(&id, "nubis-tiny: user-data exit 0", BOOT)
            .await;

        let out = ssh_stdout(&key, "10.77.0.50", "hostname; cat /tmp/ud");
        assert_eq!(out, "web\nuser-data-ran\n");

        // The platform's DNS answers for the zone, from the host ...
        let dig = Command::new("dig")
            .args([
                "+short",
                "+time=2",
                "+tries=3",
                "@10.77.0.1",
                "web.carol.nubis.internal",
            ])
            .output()
            .expect("running dig (is dnsutils installed?)");
        assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), "10.77.0.50");
        // ... and from instances.
        let lookup = ssh_stdout(&key, "10.77.0.50", "nslookup web.carol.nubis.internal");
        assert!(lookup.contains("10.77.0.50"), "{lookup}");

        // An image that wants a NoCloud seed gets one (label cidata).
        cloud.create_tiny_disk_image("tiny-nocloud", &["--config-format", "nocloud"]);
        let (seeded_id, _) = cloud
            .create_server(
                json!({"name": "seeded", "image": "tiny-nocloud", "flavor": "tiny",
                                  "networks": [{"network": "lan"}]}),
            )
            .await;
        cloud.wait_status(&seeded_id, "running", BOOT).await;
        let seed = cloud
            .data_path()
            .join("agent/instances")
            .join(&seeded_id)
            .join("vm")
            .join("config.img");
        let label = Command::new("blkid")
            .args(["-o", "value", "-s", "LABEL"])
            .arg(&seed)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), "cidata");
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{seeded_id}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);

        // A crash of `nubis up` changes nothing: after the restart the server
        // is reachable again and its network has exactly one dnsmasq.
        cloud.kill9();
        cloud.spawn().await;
        cloud.wait_status(&id, "running", BOOT).await;
        assert_eq!(ssh_stdout(&key, "10.77.0.50", "hostname"), "web\n");
        let dir = cloud.data_path().to_string_lossy().into_owned();
        let dnsmasqs = support::pids_mentioning(&dir, "dnsmasq");
        assert_eq!(
            dnsmasqs.len(),
            1,
            "one dnsmasq (default network unused): {dnsmasqs:?}"
        );

        // Delete: no TAP and no DHCP entry remain; then the network goes.
        let mac = server["addresses"][0]["mac"].as_str().unwrap().to_owned();
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        support::wait_for("the server to go", BOOT, || async {
            let (s, _) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (s == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        support::wait_for("its TAP to go", BOOT, || async {
            (!links().contains("ntap-")).then_some(())
        })
        .await;
        let networks_dir = cloud.data_path().join("agent/networks");
        let dhcp_entries = walk_text(&networks_dir);
        assert!(
            !dhcp_entries.contains(&mac),
            "DHCP entry left: {dhcp_entries}"
        );

        let net_id = net["id"].as_str().unwrap();
        let (s, b) = cloud
            .call(Method::DELETE, &format!("/v1/networks/{net_id}"), None)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
        // No server is left on the host, so no bridge or dnsmasq remains.
        support::wait_for("bridges and dnsmasq to go", BOOT, || async {
            (!links().contains("nbr-") && support::pids_mentioning(&dir, "dnsmasq").is_empty())
                .then_some(())
        })
        .await;
    });
}

/// All text of the files below `dir` (missing dir: empty).
fn walk_text(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&walk_text(&path));
        } else if let Ok(t) = std::fs::read_to_string(&path) {
            text.push_str(&t);
        }
    }
    text
}
