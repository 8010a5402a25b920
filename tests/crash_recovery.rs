//! Restart safety: a create or delete cut short by `kill -9` of `nubis up`
//! is finished after the restart, with nothing duplicated or orphaned.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::cloud::Cloud;
use support::netns::run_in_netns;
use support::qemu_pids;

const BOOT: Duration = Duration::from_secs(180);

#[test]
fn half_done_create_and_delete_are_finished_after_a_crash() {
    run_in_netns("crash", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("bob", "bob-password").await;
        cloud.upload_tiny_image();

        // Crash right after the create was accepted, before the guest runs.
        let (id, _) = cloud
            .create_server(
                json!({"name": "vm", "image": "tiny", "vcpus": 1, "memory_mib": 112, "disk_gib": 1}),
            )
            .await;
        cloud.kill9();
        cloud.spawn().await;
        cloud.wait_status(&id, "running", BOOT).await;
        cloud.wait_console(&id, "boot-count: 1", BOOT).await;
        assert_eq!(
            qemu_pids(&id).len(),
            1,
            "exactly one QEMU:\n{}",
            cloud.log()
        );

        // Crash right after the delete was accepted.
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        cloud.kill9();
        cloud.spawn().await;
        support::wait_for("the server to disappear", BOOT, || async {
            let (s, _) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (s == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        support::wait_for("its QEMU and files to go", BOOT, || async {
            let dir = cloud.data_path().join("agent/instances").join(&id);
            (qemu_pids(&id).is_empty() && !dir.exists()).then_some(())
        })
        .await;
    });
}
