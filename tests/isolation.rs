//! Tenant isolation, inside a network namespace: a server of one project
//! cannot reach a server of another, a guest cannot send from an address
//! that is not its own, and the metadata service tells each guest only its
//! own data (both guests configure themselves from it: no config drive).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::{ping, ssh_ok, ssh_stdout};
use support::netns::run_in_netns;

const BOOT: Duration = Duration::from_secs(180);

/// Creates a key pair and a server with it; returns (server id, ip, key path).
async fn server_with_key(cloud: &Cloud, name: &str) -> (String, String, std::path::PathBuf) {
    let key = cloud.keypair(&format!("{name}-key")).await;
    let (id, server) = cloud
        .create_server(json!({"name": name, "image": "tiny", "flavor": "tiny", "key_name": format!("{name}-key")}))
        .await;
    let ip = server["addresses"][0]["ip"].as_str().unwrap().to_owned();
    (id, ip, key)
}

#[test]
fn projects_are_isolated_and_guests_cannot_spoof() {
    run_in_netns("iso", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("dave", "dave-password").await;
        cloud.upload_tiny_image();
        // Images are private: the second project uploads its own copy.
        let (a_id, a_ip, a_key) = server_with_key(&cloud, "a").await;
        cloud.register_and_login("erin", "erin-password").await;
        cloud.upload_tiny_image();
        let (b_id, b_ip, _) = server_with_key(&cloud, "b").await;
        let erin = cloud.token.clone();

        cloud.token = erin;
        cloud
            .wait_console(&b_id, "nubis-tiny: sshd ready", BOOT)
            .await;
        assert!(
            ping(None, &b_ip),
            "the host reaches the other project's server"
        );

        let (s, _) = cloud
            .call(Method::GET, &format!("/v1/servers/{a_id}"), None)
            .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "another project's server is invisible"
        );
        // Back to dave for his server.
        let (s, tok) = cloud
            .call(
                Method::POST,
                "/v1/tokens",
                Some(json!({"name": "dave", "password": "dave-password"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        cloud.token = Some(tok["token"].as_str().unwrap().to_owned());
        cloud
            .wait_console(&a_id, "nubis-tiny: sshd ready", BOOT)
            .await;

        let gateway = {
            let (_, server) = cloud
                .call(Method::GET, &format!("/v1/servers/{a_id}"), None)
                .await;
            let ip: std::net::Ipv4Addr = server["addresses"][0]["ip"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let o = ip.octets();
            format!("{}.{}.{}.1", o[0], o[1], o[2])
        };
        assert!(
            ssh_ok(&a_key, &a_ip, &format!("ping -c 1 -W 2 {gateway}")),
            "own gateway reachable"
        );

        // Metadata: each guest configured itself from the service with its own data.
        assert!(cloud
            .console_log(&a_id)
            .await
            .contains("nubis-tiny: metadata-service"));
        let meta = ssh_stdout(
            &a_key,
            &a_ip,
            "wget -qO- http://169.254.169.254/openstack/latest/meta_data.json",
        );
        assert!(meta.contains(&a_id) && !meta.contains(&b_id), "{meta}");
        let ec2_id = ssh_stdout(
            &a_key,
            &a_ip,
            "wget -qO- http://169.254.169.254/latest/meta-data/instance-id",
        );
        assert_eq!(ec2_id.trim(), a_id);
        let dave_token = cloud.token.clone();
        let b_console = {
            let (s, t) = cloud
                .call(
                    Method::POST,
                    "/v1/tokens",
                    Some(json!({"name": "erin", "password": "erin-password"})),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED);
            cloud.token = Some(t["token"].as_str().unwrap().to_owned());
            let log = cloud.console_log(&b_id).await;
            cloud.token = dave_token;
            log
        };
        assert!(b_console.contains("nubis-tiny: hostname b"), "{b_console}");
        assert!(
            !ssh_ok(&a_key, &a_ip, &format!("ping -c 2 -W 2 {b_ip}")),
            "a server of another project must not be reachable"
        );

        // Spoofing: an extra address on the guest's NIC gets nowhere. The
        // target is the gateway, which answers pings: the same command from
        // the guest's real address must succeed before and after, so a
        // failure of the spoofed one is the anti-spoofing filter at work, not
        // a target that would never have answered.
        let o: Vec<&str> = a_ip.split('.').collect();
        let spoofed = format!("{}.{}.{}.200", o[0], o[1], o[2]);
        let ping_gateway_from = |source: &str| format!("ping -c 2 -W 2 -I {source} {gateway}");
        assert!(
            ssh_ok(&a_key, &a_ip, &ping_gateway_from(&a_ip)),
            "positive control: the gateway answers pings from the real address"
        );
        assert!(ssh_ok(
            &a_key,
            &a_ip,
            &format!("ip addr add {spoofed}/24 dev eth0")
        ));
        assert!(
            !ssh_ok(&a_key, &a_ip, &ping_gateway_from(&spoofed)),
            "traffic from a spoofed source address must be dropped"
        );
        assert!(
            ssh_ok(&a_key, &a_ip, &ping_gateway_from(&a_ip)),
            "positive control: the same ping from the real address still works"
        );
        // From the host: the real address answers, the spoofed one does not.
        assert!(ping(None, &a_ip), "positive control: the guest answers");
        assert!(
            !ping(None, &spoofed),
            "the spoofed address does not answer either"
        );
    });
}
