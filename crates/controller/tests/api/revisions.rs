//! Per-host desired-state revisions: a host's long poll answers when its
//! own desired state changed, not at every change in the cloud.

use super::*;
use nubis_controller::http::timeouts::Timeouts;

const SHORT: Timeouts = Timeouts {
    request: Duration::from_secs(10),
    upload_idle: Duration::from_secs(10),
    long_poll: Duration::from_secs(3),
};

#[tokio::test]
async fn a_long_poll_answers_only_changes_of_its_own_host() {
    let cloud = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            timeouts: SHORT,
            ..Default::default()
        },
    )
    .await;
    let alice = cloud.user("alice").await;
    let host = cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; MIB])
        .await;
    let path = |after: u64| format!("/v1/agent/hosts/{}/desired?after={after}", id(&host));
    let first = ok_json(
        cloud
            .agent_req(
                Method::GET,
                &format!("/v1/agent/hosts/{}/desired", id(&host)),
            )
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let revision = first["revision"].as_u64().expect("a revision");

    // Changes that do not concern the host (it has no server): a network
    // and a security group rule. The poll waits them out and answers, at
    // its timeout, the same revision.
    let poll = cloud.agent_req(Method::GET, &path(revision)).send();
    let changes = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = cloud
            .post(
                Some(&alice),
                "/v1/networks",
                &json!({"name": "lan", "cidr": "10.70.0.0/24"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = cloud
            .post(Some(&alice), "/v1/security-groups", &json!({"name": "web"}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    };
    let started = std::time::Instant::now();
    let (answer, ()) = tokio::join!(poll, changes);
    let unchanged = ok_json(answer.unwrap(), StatusCode::OK).await;
    assert_eq!(
        unchanged["revision"].as_u64(),
        Some(revision),
        "{unchanged}"
    );
    assert!(
        started.elapsed() >= SHORT.long_poll,
        "the poll answered a change of no concern to its host"
    );

    // Positive control: a server placed on the host is its change; the
    // poll answers it with a new revision.
    let poll = cloud.agent_req(Method::GET, &path(revision)).send();
    let create = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = cloud
            .post(
                Some(&alice),
                "/v1/servers",
                &json!({"name": "web", "image": "disk", "flavor": "tiny"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    };
    let (answer, ()) = tokio::join!(poll, create);
    let changed = ok_json(answer.unwrap(), StatusCode::OK).await;
    assert_ne!(changed["revision"].as_u64(), Some(revision), "{changed}");
    assert_eq!(
        changed["instances"].as_array().map(Vec::len),
        Some(1),
        "{changed}"
    );
    // Each network carries its VXLAN identifier (no peers: one host).
    let overlay = &changed["networks"][0]["overlay"];
    assert!(overlay["vni"].as_u64().is_some_and(|v| v >= 1), "{changed}");
    assert_eq!(overlay["peers"], json!([]), "{changed}");
}
