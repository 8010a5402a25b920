//! Security groups end to end: rules are enforced on a running server and
//! changed live; a group with no ingress rule lets nothing in.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::{ping, ssh_ok};
use support::netns::run_in_netns;

const BOOT: Duration = Duration::from_secs(180);

#[test]
fn rules_are_enforced_and_changed_live() {
    run_in_netns("sg", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("hana", "hana-password").await;
        cloud.upload_tiny_image();
        let key = cloud.keypair("k").await;

        let (s, group) = cloud
            .call(
                Method::POST,
                "/v1/security-groups",
                Some(json!({"name": "locked"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{group}");
        let gid = group["id"].as_str().unwrap().to_owned();
        let (id, server) = cloud
            .create_server(
                json!({"name": "box", "image": "tiny", "flavor": "tiny", "key_name": "k",
                                  "security_groups": ["locked"]}),
            )
            .await;
        assert_eq!(server["security_groups"], json!(["locked"]));
        let ip = server["addresses"][0]["ip"].as_str().unwrap().to_owned();
        // DHCP, DNS and metadata stay open whatever the rules: the guest
        // configures itself and starts sshd.
        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        assert!(
            !ssh_ok(&key, &ip, "true"),
            "no ingress rule: ssh must be refused"
        );
        assert!(!ping(None, &ip), "no ingress rule: ping must be refused");

        // Open SSH on the running server.
        let (s, rule) = cloud
            .call(
                Method::POST,
                &format!("/v1/security-groups/{gid}/rules"),
                Some(json!({"direction": "ingress", "protocol": "tcp", "port_min": 22})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{rule}");
        support::wait_for("ssh to open", BOOT, || async {
            ssh_ok(&key, &ip, "true").then_some(())
        })
        .await;
        assert!(!ping(None, &ip), "ICMP is still not allowed");

        // ... and close it again.
        let rid = rule["id"].as_str().unwrap();
        let (s, _) = cloud
            .call(
                Method::DELETE,
                &format!("/v1/security-groups/{gid}/rules/{rid}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        support::wait_for("ssh to close", BOOT, || async {
            (!ssh_ok(&key, &ip, "true")).then_some(())
        })
        .await;

        // A group in use cannot be deleted; bad rules change nothing.
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/security-groups/{gid}"), None)
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        for bad in [
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 0}),
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 30, "port_max": 20}),
            json!({"direction": "ingress", "protocol": "icmp", "port_min": 1}),
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 70000}),
            json!({"direction": "sideways", "protocol": "tcp"}),
            json!({"direction": "ingress", "protocol": "tcp", "remote_cidr": "10.0.0.0/40"}),
            json!({"direction": "ingress", "protocol": "tcp", "remote_cidr": "10.0.0.0/8", "remote_group": "locked"}),
        ] {
            let (s, b) = cloud
                .call(
                    Method::POST,
                    &format!("/v1/security-groups/{gid}/rules"),
                    Some(bad.clone()),
                )
                .await;
            assert!(s.is_client_error(), "{bad}: {s} {b}");
            assert!(b["error"]["message"].is_string(), "{b}");
        }
        let (_, g) = cloud
            .call(Method::GET, &format!("/v1/security-groups/{gid}"), None)
            .await;
        assert_eq!(g["rules"], json!([]), "bad rules created nothing");
    });
}
