//! Nothing grows without bound, end to end: `nubis up` in a network
//! namespace with the tiny guest.
//!
//! - A guest flooding its serial console leaves a log file no larger than
//!   the cap, while `console-log` still returns the newest output.
//!
//! The cap is lowered to 1 MiB (`--console-log-mib 1`; the default is 8)
//! and the guest writes 3 MiB: three times the cap, so the log must be cut
//! back at least twice. Not 100 MiB: under TCG the emulated UART moves
//! about 35-50 KB/s on this (shared, loaded) machine, so 100 MiB would take
//! 35-50 minutes, and 3x an 8 MiB cap still over 8. The code path is the
//! same at any cap (the unit tests of `serial_log` cover the arithmetic).
//! - Deleting an image is refused while a server uses it; once the server
//!   is gone, the delete frees the bytes on the controller, and the agent
//!   removes its cached copy.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use support::cloud::Cloud;
use support::guest::ssh;
use support::netns::run_in_netns;

/// Generous: guests boot in seconds under TCG, but CI machines are shared.
const BOOT: Duration = Duration::from_secs(180);
/// The serial log's cap in this test (`--console-log-mib`).
const CAP_MIB: u64 = 1;
const CAP: u64 = CAP_MIB << 20;
/// How much the guest writes to its serial console, in MiB: three times
/// the cap, so the log must have been cut back (at least twice).
const FLOOD_MIB: u64 = 3 * CAP_MIB;

#[test]
fn serial_flood_and_image_delete_stay_bounded() {
    run_in_netns("limits", || async {
        let cap = CAP_MIB.to_string();
        let mut cloud = Cloud::start_with(&["--console-log-mib", &cap]).await;
        cloud.register_and_login("dora", "dora-password").await;
        cloud.upload_tiny_image();
        let (s, net) = cloud
            .call(
                Method::POST,
                "/v1/networks",
                Some(json!({"name": "lan", "cidr": "10.78.0.0/24"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{net}");
        let key = cloud.keypair("k1").await;
        let (id, _) = cloud
            .create_server(json!({
                "name": "noisy", "image": "tiny", "flavor": "tiny", "key_name": "k1",
                "networks": [{"network": "lan", "fixed_ip": "10.78.0.50"}],
            }))
            .await;
        cloud.wait_status(&id, "running", BOOT).await;
        cloud.wait_console(&id, "boot-count: 1", BOOT).await;

        // --- The serial console flood.
        let log_file = cloud
            .data_path()
            .join("agent/instances")
            .join(&id)
            .join("console.log");
        assert!(
            std::fs::read_to_string(&log_file)
                .unwrap()
                .contains("boot-count: 1"),
            "the log starts with the boot"
        );
        support::wait_for("ssh into the guest", BOOT, || async {
            ssh(None, &key, "10.78.0.50", "true")
                .status
                .success()
                .then_some(())
        })
        .await;
        let flood = format!(
            "dd if=/dev/zero bs=1M count={FLOOD_MIB} 2>/dev/null | tr '\\0' x > /dev/ttyS0; \
             echo; echo serial-flood-done > /dev/ttyS0"
        );
        let started = Instant::now();
        let out = ssh(None, &key, "10.78.0.50", &flood);
        assert!(
            out.status.success(),
            "flood: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "the guest wrote {FLOOD_MIB} MiB to its serial console in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        cloud
            .wait_console(&id, "serial-flood-done", Duration::from_secs(300))
            .await;
        let size = std::fs::metadata(&log_file).unwrap().len();
        eprintln!("console.log is {size} bytes after the flood");
        assert!(
            size <= CAP,
            "console.log is {size} bytes, over the {CAP} cap"
        );
        let kept = std::fs::read(&log_file).unwrap();
        // Positive control: the flood did reach the log (its tail is the
        // flood), and the log was cut (the boot lines are gone).
        assert!(
            kept.windows(1024).any(|w| w.iter().all(|&b| b == b'x')),
            "the flood's bytes are in the log"
        );
        assert!(
            !String::from_utf8_lossy(&kept).contains("boot-count: 1"),
            "the log was cut back to its tail"
        );
        let tail = cloud.console_log(&id).await;
        assert!(
            tail.contains("serial-flood-done"),
            "console-log shows the newest output"
        );
        assert!(tail.len() as u64 <= CAP);

        // --- Image delete while used, then after the server is gone.
        let (s, image) = cloud.call(Method::GET, "/v1/images/tiny", None).await;
        assert_eq!(s, StatusCode::OK, "{image}");
        let image_id = image["id"].as_str().unwrap().to_owned();
        let (_, kernel) = cloud
            .call(Method::GET, "/v1/images/tiny-kernel", None)
            .await;
        let kernel_id = kernel["id"].as_str().unwrap().to_owned();
        let controller_file = cloud.data_path().join("images").join(&image_id);
        let cached = cloud
            .data_path()
            .join("agent/images")
            .join(format!("{image_id}.qcow2"));
        let cached_kernel = cloud
            .data_path()
            .join("agent/images")
            .join(format!("{kernel_id}.aki"));
        for f in [&controller_file, &cached, &cached_kernel] {
            assert!(f.exists(), "{} exists while the image is used", f.display());
        }
        let (s, body) = cloud.call(Method::DELETE, "/v1/images/tiny", None).await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "in_use");
        let (s, body) = cloud
            .call(Method::DELETE, "/v1/images/tiny-kernel", None)
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}");
        // The agent keeps images in use across its sweeps.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(cached.exists() && cached_kernel.exists());

        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        support::wait_for("the server to disappear", BOOT, || async {
            let (s, _) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (s == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        // Still listed: unused now, but the cache (20 GiB) has room, so the
        // agent keeps it for the next server.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            cached.exists(),
            "an unused image under the limit stays cached"
        );

        let out = cloud.cli(&["image", "delete", "tiny"]);
        assert!(
            out.status.success(),
            "nubis image delete: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!controller_file.exists(), "the controller freed the bytes");
        let (s, _) = cloud.call(Method::GET, "/v1/images/tiny", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        wait_gone(&cached).await;
        // The kernel is free now too.
        let (s, body) = cloud
            .call(Method::DELETE, "/v1/images/tiny-kernel", None)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
        wait_gone(&cached_kernel).await;
    });
}

/// Waits (bounded) until the agent has removed a cached file.
async fn wait_gone(path: &Path) {
    let what = format!("the agent to remove {}", path.display());
    support::wait_for(&what, Duration::from_secs(60), || async {
        (!path.exists()).then_some(())
    })
    .await;
}
