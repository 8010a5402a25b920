//! Bandwidth limits end to end: a server created with 10 Mbit/s each way
//! gets about that through TCP (iperf3 between the guest and a server in
//! an "outside" namespace beyond the host), in both directions; changed on the running server to
//! 4 Mbit/s it gets about that at once; lifted, it gets well above both, so
//! the figures measure the limiter and not the (TCG) guest.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::ssh_stdout;
use support::iperf::{measure, Direction, IperfServer};
use support::netns::{link_outside, run_in_netns, NetNs};

const BOOT: Duration = Duration::from_secs(180);
const APPLIED: Duration = Duration::from_secs(30);
/// The iperf3 server's address, in the outside namespace.
const IPERF_SERVER: &str = "198.51.100.2";

fn assert_near(what: &str, measured: f64, want: f64) {
    assert!(
        (want * 0.8..=want * 1.2).contains(&measured),
        "{what}: {measured:.2} Mbit/s is not within 20% of {want} Mbit/s"
    );
}

/// The host's qdiscs and nftables ruleset (of the test's namespace).
fn host_shaping() -> String {
    let out = |prog: &str, args: &[&str]| {
        let o = Command::new(prog).args(args).output().expect(prog);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    format!(
        "{}{}",
        out("tc", &["qdisc", "show"]),
        out("nft", &["list", "ruleset", "netdev"])
    )
}

/// Changes the server's limits and waits until the host enforces them
/// (`present` all in the host's shaping, `absent` none).
async fn change_limits(
    cloud: &Cloud,
    id: &str,
    bandwidth: Value,
    present: &[&str],
    absent: &[&str],
) {
    let (s, b) = cloud
        .call(
            Method::PATCH,
            &format!("/v1/servers/{id}"),
            Some(json!({ "bandwidth": bandwidth })),
        )
        .await;
    assert!(s.is_success(), "PATCH bandwidth: {s} {b}");
    support::wait_for("the new limits on the host", APPLIED, || async {
        let shaping = host_shaping();
        (present.iter().all(|p| shaping.contains(p)) && absent.iter().all(|a| !shaping.contains(a)))
            .then_some(())
    })
    .await;
}

#[test]
fn limits_hold_in_both_directions_and_change_live() {
    // The iperf3 server is outside the host: guests cannot reach the host.
    let outside = NetNs::new("bwout");
    let out_name = outside.name.clone();
    run_in_netns("bw", move || async move {
        link_outside(
            &out_name,
            "bw-host",
            "198.51.100.1/24",
            "bw-out",
            &format!("{IPERF_SERVER}/24"),
        );
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("iris", "iris-password").await;
        cloud.upload_tiny_image();
        let key = cloud.keypair("k").await;
        let (id, server) = cloud
            .create_server(json!({
                "name": "pipe", "image": "tiny", "flavor": "tiny", "key_name": "k",
                "bandwidth": {"inbound": {"average_mbit": 10}, "outbound": {"average_mbit": 10}},
            }))
            .await;
        let ip = server["addresses"][0]["ip"].as_str().unwrap().to_owned();
        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        // Limited before the guest ever ran.
        let shaping = host_shaping();
        assert!(shaping.contains("rate 10Mbit"), "{shaping}");
        let version = ssh_stdout(&key, &ip, "iperf3 --version");
        assert!(version.contains("iperf"), "{version}");

        let _server = IperfServer::start_in(&out_name, IPERF_SERVER);
        let figures = |label: &str| {
            let inbound = measure(&key, &ip, IPERF_SERVER, Direction::Inbound);
            let outbound = measure(&key, &ip, IPERF_SERVER, Direction::Outbound);
            println!("{label}: inbound {inbound:.2} Mbit/s, outbound {outbound:.2} Mbit/s");
            (inbound, outbound)
        };
        let (inbound, outbound) = figures("limit 10 Mbit/s");
        assert_near("inbound at 10", inbound, 10.0);
        assert_near("outbound at 10", outbound, 10.0);

        // Changed on the running server: enforced at once.
        change_limits(
            &cloud,
            &id,
            json!({"inbound": {"average_mbit": 4}, "outbound": {"average_mbit": 4}}),
            &["rate 4Mbit", "limit rate over 500000 bytes/second"],
            &["rate 10Mbit"],
        )
        .await;
        let (inbound, outbound) = figures("limit 4 Mbit/s");
        assert_near("inbound at 4", inbound, 4.0);
        assert_near("outbound at 4", outbound, 4.0);

        // Lifted: the path itself is much faster than the limits were.
        change_limits(&cloud, &id, json!({}), &[], &["tbf", "limit rate"]).await;
        let (inbound, outbound) = figures("unlimited");
        assert!(inbound > 25.0, "unlimited inbound only {inbound:.2} Mbit/s");
        assert!(
            outbound > 25.0,
            "unlimited outbound only {outbound:.2} Mbit/s"
        );

        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        support::wait_for("the server's limits to go", BOOT, || async {
            let shaping = host_shaping();
            (!shaping.contains("nubis_")).then_some(())
        })
        .await;
    });
    drop(outside);
}
