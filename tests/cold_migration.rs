//! Cold migration end to end, on three hosts (tests/support/multihost.rs):
//! hosts 0 and 1 share an instance store (`--shared-instance-store`, one
//! directory both see), host 2 has local disks only.
//!
//! The data marker is the tiny guest's boot counter: every boot reads the
//! counter in sector 0 of its disk, adds one, writes it back and prints
//! `boot-count: N` on the console. A server that boots with `boot-count: 2`
//! on another host has the disk it wrote on the first.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use support::multihost::{self, host_name, MultiHost, Options};

const BOOT: Duration = Duration::from_secs(300);
const MOVE: Duration = Duration::from_secs(300);

/// What the source logs when it serves a disk, and the target when it has
/// copied one (crates/agent/src/moves/{departure,arrival}.rs).
const SERVED: &str = "serving disk to the target host";
const COPIED: &str = "disk copied from the source host";

/// Moves server `id` to host `target` (admin) and waits until the move is done.
async fn migrate(cloud: &MultiHost, id: &str, target: usize) -> Value {
    let (s, m) = cloud
        .call(
            Method::POST,
            &format!("/v1/servers/{id}/migrate"),
            Some(json!({"host": host_name(target)})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "migrate: {m}");
    let mid = m["id"].as_str().unwrap().to_owned();
    support::wait_for("the migration to end", MOVE, || async {
        let (_, all) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}/migrations"), None)
            .await;
        let m = all
            .as_array()?
            .iter()
            .find(|m| m["id"] == mid.as_str())?
            .clone();
        (m["state"] != "running").then_some(m)
    })
    .await
}

async fn stop(cloud: &MultiHost, id: &str) {
    let (s, body) = cloud
        .call(Method::POST, &format!("/v1/servers/{id}/stop"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "stop: {body}");
    cloud.wait_status(id, "stopped", BOOT).await;
}

async fn start(cloud: &MultiHost, id: &str) {
    let (s, body) = cloud
        .call(Method::POST, &format!("/v1/servers/{id}/start"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "start: {body}");
    cloud.wait_status(id, "running", BOOT).await;
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn a_stopped_server_moves_with_its_disk_and_addresses() {
    let store = tempfile::Builder::new()
        .prefix("nubis-shared-store-")
        .tempdir()
        .unwrap();
    let shared = store.path().to_string_lossy().into_owned();
    let flag = vec!["--shared-instance-store".to_owned(), shared.clone()];
    let options = Options {
        host_agent_args: vec![flag.clone(), flag, Vec::new()],
        ..Options::hosts(3)
    };
    let store_path = store.path().to_owned();
    multihost::run("coldmig", options, |mut cloud| async move {
        cloud.create_admin_and_login("root", "root-password").await;
        cloud.upload_tiny_image();
        let (id, _) = cloud
            .create_server(json!({"name": "mover", "image": "tiny", "flavor": "tiny"}))
            .await;
        cloud.wait_status(&id, "running", BOOT).await;
        cloud.wait_console(&id, "boot-count: 1", BOOT).await;
        let (_, before) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        let addresses = before["addresses"].clone();
        assert!(
            addresses[0]["mac"].is_string(),
            "the server has a NIC: {before}"
        );

        // A running server is refused (live-migrate is for those).
        let (s, body) = cloud
            .call(
                Method::POST,
                &format!("/v1/servers/{id}/migrate"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}");

        stop(&cloud, &id).await;
        // 1. A copy: to host 2 (local disks) or, from it, to host 0.
        let source = cloud.host_of(&id).await.expect("placed");
        let target = if source == 2 { 0 } else { 2 };
        let m = migrate(&cloud, &id, target).await;
        assert_eq!(m["state"], "done", "{m}");
        assert_eq!(cloud.host_of(&id).await, Some(target));
        let served = cloud.hosts[source].log();
        assert!(count(&served, SERVED) >= 1, "the source served the disk");
        assert!(
            count(&cloud.hosts[target].log(), COPIED) >= 1,
            "the target copied it"
        );
        // Positive control for the shared case: a copy moves bytes.
        let copied_line = cloud.hosts[target]
            .log()
            .lines()
            .find(|l| l.contains(COPIED))
            .unwrap_or_default()
            .to_owned();
        assert!(
            !copied_line.contains("bytes=0 ") && copied_line.contains("bytes="),
            "{copied_line}"
        );
        start(&cloud, &id).await;
        cloud.wait_console(&id, "boot-count: 2", BOOT).await;
        let (_, after) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(after["addresses"], addresses, "same address and MAC");
        // The source removes its copy once released.
        if source == 2 {
            support::wait_for("the source to remove its copy", MOVE, || async {
                (!cloud.hosts[2]
                    .agent_dir()
                    .join("instances")
                    .join(&id)
                    .exists())
                .then_some(())
            })
            .await;
        }

        // 2. Onto the shared store: host 2 -> 0 copies; 0 -> 1 copies nothing.
        stop(&cloud, &id).await;
        if target == 2 {
            let m = migrate(&cloud, &id, 0).await;
            assert_eq!(m["state"], "done", "{m}");
        }
        let served_0 = count(&cloud.hosts[0].log(), SERVED);
        let copied_1 = count(&cloud.hosts[1].log(), COPIED);
        let m = migrate(&cloud, &id, 1).await;
        assert_eq!(m["state"], "done", "{m}");
        assert_eq!(cloud.host_of(&id).await, Some(1));
        assert_eq!(
            count(&cloud.hosts[0].log(), SERVED),
            served_0,
            "shared store: the source served no disk"
        );
        assert_eq!(
            count(&cloud.hosts[1].log(), COPIED),
            copied_1,
            "shared store: the target copied nothing"
        );
        // Host 0 gives up its claim but leaves the directory to host 1.
        support::wait_for("host 0 to release its claim", MOVE, || async {
            (!cloud.hosts[0].agent_dir().join("claims").join(&id).exists()).then_some(())
        })
        .await;
        let disk = store_path.join("instances").join(&id).join("vm/disk.qcow2");
        assert!(
            disk.exists(),
            "the shared directory stays: {}",
            disk.display()
        );
        start(&cloud, &id).await;
        cloud.wait_console(&id, "boot-count: 3", BOOT).await;
        let (_, after) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(after["addresses"], addresses, "same address and MAC");

        let (_, events) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}/events"), None)
            .await;
        let kinds: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"migrating"), "{events}");
        assert!(kinds.contains(&"migrated"), "{events}");
    });
    drop(store);
}
