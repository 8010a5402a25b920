//! iperf3 between a guest and a server outside the host (guests are fenced
//! off the host itself, see `network/host_fence.rs`).

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The host side's `iperf3 -s`, killed on drop (also when the test fails).
pub struct IperfServer(Child);

impl IperfServer {
    /// `iperf3 -s` on `address` inside the network namespace `netns`.
    pub fn start_in(netns: &str, address: &str) -> Self {
        // `ip netns exec` execs iperf3 itself: the child is the server.
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "iperf3", "-s", "-B", address])
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
pub enum Direction {
    /// Towards the guest (`iperf3 -R`: the server sends).
    Inbound,
    /// From the guest.
    Outbound,
}

/// Mbit/s of one TCP stream between the guest and `server`, as received.
/// The first 2 s are left out (`-O 2`): slow start, and the second's worth
/// a fresh nftables limiter lets through (see `network/shaping.rs`).
pub fn measure(key: &Path, ip: &str, server: &str, direction: Direction) -> f64 {
    let reverse = match direction {
        Direction::Inbound => " -R",
        Direction::Outbound => "",
    };
    let command = format!("iperf3 -c {server} -t 5 -O 2 -J{reverse}");
    let mut last = String::new();
    // The host side's server takes one test at a time: retry while busy.
    for _ in 0..5 {
        let out = super::guest::ssh(None, key, ip, &command);
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
