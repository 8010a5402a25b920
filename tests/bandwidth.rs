//! Bandwidth limits end to end: a server created with 10 Mbit/s each way
//! gets about that through TCP (iperf3 between the guest and the host side
//! of its network), in both directions; changed on the running server to
//! 4 Mbit/s it gets about that at once; lifted, it gets well above both, so
//! the figures measure the limiter and not the (TCG) guest.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::ssh_stdout;
use support::netns::run_in_netns;

const BOOT: Duration = Duration::from_secs(180);
const APPLIED: Duration = Duration::from_secs(30);

/// The host side's `iperf3 -s`, killed on drop (also when the test fails).
struct IperfServer(Child);

impl IperfServer {
    fn start(address: &str) -> Self {
        let child = Command::new("iperf3")
            .args(["-s", "-B", address])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running iperf3 (is the iperf3 package installed?)");
        Self(child)
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    /// Towards the guest (`iperf3 -R`: the host side sends).
    Inbound,
    /// From the guest.
    Outbound,
}

/// Mbit/s of one TCP stream between the guest and `server`, as received.
/// The first 2 s are left out (`-O 2`): slow start, and the second's worth
/// a fresh nftables limiter lets through (see `network/shaping.rs`).
fn measure(key: &Path, ip: &str, server: &str, direction: Direction) -> f64 {
    let reverse = match direction {
        Direction::Inbound => " -R",
        Direction::Outbound => "",
    };
    let command = format!("iperf3 -c {server} -t 5 -O 2 -J{reverse}");
    let mut last = String::new();
    // The host side's server takes one test at a time: retry while busy.
    for _ in 0..5 {
        let out = support::guest::ssh(None, key, ip, &command);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Ok(report) = serde_json::from_str::<Value>(&text) {
            if let Some(bps) = report["end"]["sum_received"]["bits_per_second"].as_f64() {
                return bps / 1e6;
            }
        }
        last = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("iperf3 {direction:?} gave no result: {last}");
}

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
    run_in_netns("bw", || async {
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
        let gateway = {
            let o = ip.parse::<std::net::Ipv4Addr>().unwrap().octets();
            format!("{}.{}.{}.1", o[0], o[1], o[2])
        };
        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        // Limited before the guest ever ran.
        let shaping = host_shaping();
        assert!(shaping.contains("rate 10Mbit"), "{shaping}");
        let version = ssh_stdout(&key, &ip, "iperf3 --version");
        assert!(version.contains("iperf"), "{version}");

        let _server = IperfServer::start(&gateway);
        let figures = |label: &str| {
            let inbound = measure(&key, &ip, &gateway, Direction::Inbound);
            let outbound = measure(&key, &ip, &gateway, Direction::Outbound);
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
}
