//! Rental terms end to end, each test inside its own network namespace:
//! traffic is metered to the byte (against the guest's own interface
//! counters) and survives a restart; a used-up traffic quota throttles or
//! suspends the server until it is raised; a lease stops and then deletes
//! its server (with the clock moved forward through `--clock-offset-file`).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::cloud::Cloud;
use support::guest::{ping, ssh, ssh_command, ssh_ok, ssh_stdout};
use support::netns::run_in_netns;
use support::wait_for;

const BOOT: Duration = Duration::from_secs(180);

/// Starts a cloud with fast metering, logs in, uploads the tiny image and
/// boots one server with a key pair and `extra` create fields. Returns the
/// cloud, the server id, its address and the key.
async fn cloud_with_server(
    args: &[&str],
    extra: Value,
) -> (Cloud, String, String, std::path::PathBuf) {
    let mut cloud = Cloud::start_with(args).await;
    cloud.register_and_login("renter", "renter-password").await;
    cloud.upload_tiny_image();
    let key = cloud.keypair("k").await;
    let mut body = json!({"name": "vm", "image": "tiny", "flavor": "tiny", "key_name": "k"});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    let (id, server) = cloud.create_server(body).await;
    let ip = server["addresses"][0]["ip"].as_str().unwrap().to_owned();
    cloud.wait_status(&id, "running", BOOT).await;
    cloud
        .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
        .await;
    wait_for("ssh to answer", BOOT, || async {
        ssh_ok(&key, &ip, "true").then_some(())
    })
    .await;
    (cloud, id, ip, key)
}

/// The guest's own eth0 counters: (received, transmitted) bytes.
fn guest_counters(key: &Path, ip: &str) -> (u64, u64) {
    let out = ssh_stdout(
        key,
        ip,
        "cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes",
    );
    let v: Vec<u64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    (v[0], v[1])
}

/// Pushes `bytes` into the guest over ssh; returns how long it took, or
/// `None` when the transfer failed (e.g. networking cut).
fn push_to_guest(key: &Path, ip: &str, bytes: usize) -> Option<Duration> {
    let start = Instant::now();
    let mut child = ssh_command(None, key, ip, "cat > /dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // Incompressible data: ssh compression must not shrink it.
        let mut block = vec![0u8; 64 * 1024];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut left = bytes;
        while left > 0 {
            for b in block.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            let n = left.min(block.len());
            if stdin.write_all(&block[..n]).is_err() {
                break;
            }
            left -= n;
        }
    }
    let ok = child.wait().expect("ssh").success();
    ok.then(|| start.elapsed())
}

/// Pulls `mib` MiB out of the guest over ssh.
fn pull_from_guest(key: &Path, ip: &str, mib: usize) {
    let command = format!("dd if=/dev/urandom bs=65536 count={} 2>/dev/null", mib * 16);
    let out = ssh(None, key, ip, &command);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pull: {err}");
    assert_eq!(out.stdout.len(), mib << 20);
}

/// The metered (inbound, outbound) bytes of a server this month, once two
/// reads two seconds apart agree (the agent reports every second).
async fn settled_usage(cloud: &Cloud, id: &str) -> (u64, u64) {
    let read = || async {
        let (s, u) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}/usage"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{u}");
        (
            u["inbound_bytes"].as_u64().unwrap(),
            u["outbound_bytes"].as_u64().unwrap(),
        )
    };
    let mut last = read().await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = read().await;
        if now == last {
            return now;
        }
        last = now;
    }
}

fn within(what: &str, measured: u64, truth: u64, tolerance: f64) {
    let diff = (measured as f64 - truth as f64).abs() / truth as f64;
    println!(
        "{what}: metered {measured} B, guest counted {truth} B ({:.3}% apart)",
        diff * 100.0
    );
    assert!(
        diff <= tolerance,
        "{what}: metered {measured} vs guest {truth}: {:.2}% apart",
        diff * 100.0
    );
}

#[test]
fn traffic_is_metered_exactly_and_survives_a_restart() {
    run_in_netns("meter", || async {
        let (mut cloud, id, ip, key) =
            cloud_with_server(&["--meter-interval", "1"], json!({})).await;

        let guest_before = guest_counters(&key, &ip);
        let meter_before = settled_usage(&cloud, &id).await;
        push_to_guest(&key, &ip, 6 << 20).expect("push");
        pull_from_guest(&key, &ip, 4);
        let guest_after = guest_counters(&key, &ip);
        let meter_after = settled_usage(&cloud, &id).await;
        // Guest rx = inbound, guest tx = outbound.
        within(
            "inbound",
            meter_after.0 - meter_before.0,
            guest_after.0 - guest_before.0,
            0.02,
        );
        within(
            "outbound",
            meter_after.1 - meter_before.1,
            guest_after.1 - guest_before.1,
            0.02,
        );

        // A crash and restart of the whole cloud counts nothing twice and
        // loses nothing: the same totals, then new traffic counted once.
        cloud.kill9();
        cloud.spawn().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after_restart = settled_usage(&cloud, &id).await;
        let guest_now = guest_counters(&key, &ip);
        // Only the counter-reading ssh sessions happened in between.
        assert!(
            after_restart.0 - meter_after.0 < 64 * 1024
                && after_restart.1 - meter_after.1 < 64 * 1024,
            "restart changed the totals: {meter_after:?} -> {after_restart:?}"
        );
        push_to_guest(&key, &ip, 4 << 20).expect("push");
        let guest_end = guest_counters(&key, &ip);
        let meter_end = settled_usage(&cloud, &id).await;
        within(
            "inbound after restart",
            meter_end.0 - after_restart.0,
            guest_end.0 - guest_now.0,
            0.02,
        );

        // The project's view and the CLI agree.
        let (s, p) = cloud
            .call(Method::GET, "/v1/projects/current/usage", None)
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["servers"][0]["name"], "vm");
        assert!(p["total_bytes"].as_u64().unwrap() >= meter_end.0 + meter_end.1);
        let out = cloud.cli(&["server", "usage", "vm"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("quota none"),
            "{text}"
        );
    });
}

/// Seconds to push 1 MiB into the guest.
fn push_seconds(key: &Path, ip: &str) -> f64 {
    push_to_guest(key, ip, 1 << 20).expect("push").as_secs_f64()
}

async fn events(cloud: &Cloud, id: &str) -> Vec<String> {
    let (s, e) = cloud
        .call(Method::GET, &format!("/v1/servers/{id}/events"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    e.as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn set_quota(cloud: &Cloud, id: &str, quota: Value) -> Value {
    let (s, b) = cloud
        .call(
            Method::PATCH,
            &format!("/v1/servers/{id}"),
            Some(json!({ "traffic_quota": quota })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

#[test]
fn a_used_up_quota_throttles_or_suspends_until_raised() {
    run_in_netns("quota", || async {
        let (cloud, id, ip, key) = cloud_with_server(
            &["--meter-interval", "1", "--throttle-mbit", "1"],
            json!({"traffic_quota": {"monthly_gib": 0.01, "policy": "throttle"}}),
        )
        .await;
        let fast = push_seconds(&key, &ip);

        // ~10 MiB quota: use it up.
        push_to_guest(&key, &ip, 12 << 20).expect("push");
        let throttled = wait_for(
            "the server to be throttled",
            Duration::from_secs(30),
            || async {
                let (_, s) = cloud
                    .call(Method::GET, &format!("/v1/servers/{id}"), None)
                    .await;
                (s["traffic_state"] == "throttled").then_some(s)
            },
        )
        .await;
        assert!(
            throttled["traffic_reason"]
                .as_str()
                .unwrap()
                .contains("quota"),
            "{throttled}"
        );
        assert_eq!(throttled["status"], "running");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let slow = push_seconds(&key, &ip);
        println!("1 MiB in: {fast:.2} s before, {slow:.2} s throttled at 1 Mbit/s");
        // 1 MiB at 1 Mbit/s takes over 8 s.
        assert!(
            slow > 6.0 && slow > 3.0 * fast,
            "fast {fast:.2} s, throttled {slow:.2} s"
        );
        assert!(events(&cloud, &id)
            .await
            .contains(&"traffic_throttled".into()));

        // Raising the quota lifts it at once.
        let s = set_quota(&cloud, &id, json!({"monthly_gib": 1})).await;
        assert_eq!(s["traffic_state"], "normal", "{s}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let again = push_seconds(&key, &ip);
        println!("1 MiB in after raising the quota: {again:.2} s");
        assert!(
            again < slow / 2.0,
            "restored {again:.2} s vs throttled {slow:.2} s"
        );

        // The suspend policy below usage cuts networking; the VM runs on.
        let s = set_quota(
            &cloud,
            &id,
            json!({"monthly_gib": 0.01, "policy": "suspend"}),
        )
        .await;
        assert_eq!(s["traffic_state"], "suspended", "{s}");
        wait_for("networking to be cut", Duration::from_secs(20), || async {
            (!ping(None, &ip)).then_some(())
        })
        .await;
        assert!(!ssh_ok(&key, &ip, "true"), "ssh works while suspended");
        let (_, server) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(server["status"], "running");
        assert!(server["traffic_reason"]
            .as_str()
            .unwrap()
            .contains("suspended"));

        set_quota(&cloud, &id, json!({"monthly_gib": 1, "policy": "suspend"})).await;
        wait_for(
            "networking to come back",
            Duration::from_secs(20),
            || async { ssh_ok(&key, &ip, "true").then_some(()) },
        )
        .await;
        let kinds = events(&cloud, &id).await;
        for want in ["traffic_throttled", "traffic_suspended", "traffic_restored"] {
            assert!(kinds.contains(&want.to_owned()), "{kinds:?}");
        }
    });
}

#[test]
fn an_expired_lease_stops_then_deletes_its_server() {
    run_in_netns("lease", || async {
        let offset = tempfile::NamedTempFile::new().unwrap();
        let offset_path = offset.path().to_str().unwrap().to_owned();
        std::fs::write(&offset_path, "0").unwrap();
        let mut cloud = Cloud::start_with(&[
            "--rental-check-interval",
            "1",
            "--lease-grace",
            "3600",
            "--clock-offset-file",
            &offset_path,
        ])
        .await;
        cloud.register_and_login("renter", "renter-password").await;
        cloud.upload_tiny_image();
        // A lease in the past is refused and creates nothing.
        let (s, e) = cloud
            .call(
                Method::POST,
                "/v1/servers",
                Some(json!({"name": "old", "image": "tiny", "flavor": "tiny",
                            "lease": {"expires_at": "2020-01-01T00:00:00Z"}})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
        let (id, server) = cloud
            .create_server(json!({"name": "rented", "image": "tiny", "flavor": "tiny",
                                  "lease": {"duration_seconds": 3600}}))
            .await;
        assert_eq!(server["lease"]["state"], "active", "{server}");
        cloud.wait_status(&id, "running", BOOT).await;

        // An hour later the lease has run out: the server is stopped.
        std::fs::write(&offset_path, "3700").unwrap();
        let stopped = cloud
            .wait_status(&id, "stopped", Duration::from_secs(90))
            .await;
        assert_eq!(stopped["lease"]["state"], "expired", "{stopped}");
        let (s, e) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/start"), None)
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("renew"));

        // After the grace period it is deleted and nothing is left.
        std::fs::write(&offset_path, "7400").unwrap();
        wait_for("the server to be gone", Duration::from_secs(60), || async {
            let (s, _) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (s == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        let needle = cloud.data_path().to_str().unwrap().to_owned();
        assert!(support::qemu_pids(&needle).is_empty(), "QEMU left behind");
        let (_, events) = cloud.call(Method::GET, "/v1/events", None).await;
        let kinds: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["scheduled", "lease_expired", "lease_deleted"],
            "{events}"
        );
    });
}
