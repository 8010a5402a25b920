//! End to end, as a user would: `nubis up` on an empty data dir inside a
//! network namespace; register; log in; upload the tiny guest; create a
//! server; it runs and counts its boots on its own disk across stop/start
//! and reboot; `kill -9` of `nubis up` and a restart adopt the running VM;
//! delete leaves nothing behind.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::cloud::Cloud;
use support::netns::run_in_netns;
use support::qemu_pids;

/// Generous: guests boot in seconds under TCG, but CI machines are shared.
const BOOT: Duration = Duration::from_secs(180);

#[test]
fn server_lifecycle_with_restart_and_clean_delete() {
    run_in_netns("lifecycle", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("alice", "alice-password").await;
        cloud.upload_tiny_image();

        let (id, server) = cloud
            .create_server(json!({"name": "vm1", "image": "tiny", "flavor": "tiny"}))
            .await;
        assert!(
            ["building", "running"].contains(&server["status"].as_str().unwrap()),
            "{server}"
        );

        let running = cloud.wait_status(&id, "running", BOOT).await;
        assert_eq!(running["vcpus"], 1);
        assert_eq!(running["memory_mib"], 128);
        assert!(running["host"].is_string() && running["launched_at"].is_string());
        cloud.wait_console(&id, "boot-count: 1", BOOT).await;
        assert_eq!(qemu_pids(&id).len(), 1, "one QEMU for the server");

        // Stop powers the guest down; start boots it from the same disk.
        let (s, _) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/stop"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        cloud.wait_status(&id, "stopped", BOOT).await;
        assert!(qemu_pids(&id).is_empty(), "stopped server has no QEMU");
        let (s, _) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/start"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        cloud.wait_status(&id, "running", BOOT).await;
        cloud.wait_console(&id, "boot-count: 2", BOOT).await;

        // Reboot resets the guest, which boots a third time.
        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/reboot"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        cloud.wait_console(&id, "boot-count: 3", BOOT).await;
        cloud.wait_status(&id, "running", BOOT).await;

        // A crash of `nubis up` leaves the guest running; the restart adopts it.
        let before = qemu_pids(&id);
        assert_eq!(before.len(), 1);
        cloud.kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            qemu_pids(&id),
            before,
            "the guest survives kill -9 of nubis up"
        );
        cloud.spawn().await;
        cloud.wait_status(&id, "running", BOOT).await;
        // Give the agent time to (wrongly) start a second copy, then check it did not.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            qemu_pids(&id),
            before,
            "adopted, not duplicated:\n{}",
            cloud.log()
        );
        assert!(cloud.log().contains("adopted running instance"));
        let log = cloud.console_log(&id).await;
        assert!(
            !log.contains("boot-count: 4"),
            "adoption must not reboot the guest"
        );

        // Delete removes the VM and every file of it.
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
        assert!(qemu_pids(&id).is_empty(), "no QEMU left");
        let leftovers = files_mentioning(cloud.data_path(), &id);
        assert!(leftovers.is_empty(), "files left behind: {leftovers:?}");

        // With the last server gone its network left the host; a new server
        // brings it back at once (not after a cache of the old state expires).
        let (next_id, _) = cloud
            .create_server(json!({"name": "vm2", "image": "tiny", "flavor": "tiny"}))
            .await;
        cloud
            .wait_status(&next_id, "running", Duration::from_secs(20))
            .await;
    });
}

/// Paths under `root` whose name contains `needle`.
fn files_mentioning(root: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.to_string_lossy().contains(needle) {
                found.push(path.clone());
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}
