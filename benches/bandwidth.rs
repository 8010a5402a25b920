//! `make bench`: throughput under bandwidth limits, and what metering and
//! shaping cost an unlimited server.
//!
//! In one run, inside a network namespace, one tiny server (TCG) is measured
//! with iperf3 (TCP, 5 s after 2 s left out) between the guest and a server
//! in an "outside" namespace beyond the host (guests are fenced off the host
//! itself), in both directions: unlimited first (the baseline:
//! the same path with no limiter), then at each limit set live with
//! `PATCH /v1/servers/{id}`, then throttled by a used-up traffic quota. It
//! prints measured Mbit/s and the ratio to the limit. Not a test: nothing
//! here asserts a rate.

#[path = "../tests/support/mod.rs"]
mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::ssh_ok;
use support::iperf::{measure, Direction, IperfServer};
use support::netns::{link_outside, run_in_netns, NetNs};

const BOOT: Duration = Duration::from_secs(180);
/// The iperf3 server's address, in the outside namespace.
const IPERF_SERVER: &str = "198.51.100.2";

fn main() {
    let outside = NetNs::new("bwbout");
    let out_name = outside.name.clone();
    run_in_netns("bwbench", move || async move {
        link_outside(
            &out_name,
            "bw-host",
            "198.51.100.1/24",
            "bw-out",
            &format!("{IPERF_SERVER}/24"),
        );
        let mut cloud = Cloud::start_with(&["--meter-interval", "1", "--throttle-mbit", "2"]).await;
        cloud.register_and_login("bench", "bench-password").await;
        cloud.upload_tiny_image();
        let key = cloud.keypair("k").await;
        let (id, server) = cloud
            .create_server(
                json!({"name": "pipe", "image": "tiny", "flavor": "tiny", "key_name": "k"}),
            )
            .await;
        let ip = server["addresses"][0]["ip"].as_str().unwrap().to_owned();
        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        support::wait_for("ssh", BOOT, || async {
            ssh_ok(&key, &ip, "true").then_some(())
        })
        .await;
        let _iperf = IperfServer::start_in(&out_name, IPERF_SERVER);
        let both = || {
            (
                measure(&key, &ip, IPERF_SERVER, Direction::Inbound),
                measure(&key, &ip, IPERF_SERVER, Direction::Outbound),
            )
        };
        let patch = |body: Value| {
            let cloud = &cloud;
            let id = id.clone();
            async move {
                let (s, b) = cloud
                    .call(Method::PATCH, &format!("/v1/servers/{id}"), Some(body))
                    .await;
                assert!(s.is_success(), "PATCH: {s} {b}");
                // The agent applies it within a desired-state round trip.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        };

        println!("bandwidth (iperf3 TCP, guest under TCG; Mbit/s received)");
        println!(
            "{:<22} {:>10} {:>10} {:>8} {:>8}",
            "limit", "inbound", "outbound", "in/lim", "out/lim"
        );
        let (bi, bo) = both();
        println!(
            "{:<22} {bi:>10.2} {bo:>10.2} {:>8} {:>8}",
            "unlimited (baseline)", "-", "-"
        );
        for mbit in [10u32, 50, 100] {
            patch(json!({"bandwidth": {"inbound": {"average_mbit": mbit}, "outbound": {"average_mbit": mbit}}})).await;
            let (i, o) = both();
            let m = f64::from(mbit);
            println!(
                "{:<22} {i:>10.2} {o:>10.2} {:>8.3} {:>8.3}",
                format!("{mbit} Mbit/s"),
                i / m,
                o / m
            );
        }
        // Shaping and metering off again: the baseline path once more.
        patch(json!({"bandwidth": {}})).await;
        let (ai, ao) = both();
        println!(
            "{:<22} {ai:>10.2} {ao:>10.2} {:>8} {:>8}",
            "unlimited (again)", "-", "-"
        );
        // A used-up quota with the throttle policy (operator rate 2 Mbit/s).
        patch(json!({"traffic_quota": {"monthly_gib": 0.001, "policy": "throttle"}})).await;
        support::wait_for("throttling", Duration::from_secs(30), || async {
            let (_, s) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (s["traffic_state"] == "throttled").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (ti, to) = both();
        println!(
            "{:<22} {ti:>10.2} {to:>10.2} {:>8.3} {:>8.3}",
            "throttled (2 Mbit/s)",
            ti / 2.0,
            to / 2.0
        );
    });
    drop(outside);
}
