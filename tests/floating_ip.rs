//! Floating IPs end to end: an "outside" namespace, joined to the host's
//! namespace by a veth pair, reaches a server through its floating IP (and
//! loses it when the address is disassociated).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::{ping, ssh, ssh_ok as ssh_ok_from_host};
use support::netns::{run_in_netns, NetNs};

const BOOT: Duration = Duration::from_secs(180);

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip");
    assert!(status.success(), "ip {args:?}");
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
        // An admin (made by the operator), who also makes the pool.
        cloud
            .create_admin_and_login("frank", "frank-password")
            .await;
        cloud.upload_tiny_image();
        let (s, pool) = cloud
            .call(
                Method::POST,
                "/v1/floating-ip-pools",
                Some(json!({"name": "public", "first": "203.0.113.10", "last": "203.0.113.20"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{pool}");
        let key = cloud.keypair("k").await;
        let (id, server) = cloud
            .create_server(
                json!({"name": "pub", "image": "tiny", "flavor": "tiny", "key_name": "k"}),
            )
            .await;
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
            {
                let out = ssh(Some(&out_name), &key, "203.0.113.10", "hostname");
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            }
        })
        .await;
        assert_eq!(hostname.trim(), "pub");
        assert!(
            !ping(Some(&out_name), &fixed),
            "the private address is not reachable from outside"
        );
        // Outbound: the guest reaches the outside world (as its floating IP).
        assert!(
            ssh_ok_from_host(&key, &fixed, "ping -c 1 -W 2 203.0.113.254"),
            "the guest reaches outside"
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
            (!ping(Some(&out_name), "203.0.113.10")).then_some(())
        })
        .await;
        // Without a floating IP, outbound traffic is NATed to the host's address.
        assert!(
            ssh_ok_from_host(&key, &fixed, "ping -c 1 -W 2 203.0.113.254"),
            "outbound NAT without a floating IP"
        );
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/floating-ips/{fip_id}"), None)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    });
    drop(outside);
}
