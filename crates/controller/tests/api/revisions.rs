//! Per-host desired-state revisions: a host's long poll answers when its
//! own desired state changed, not at every change in the cloud.

use super::*;
use nubis_controller::http::timeouts::Timeouts;

/// Test timeouts with long polls of `secs` seconds.
const fn long_polls_of(secs: u64) -> Timeouts {
    Timeouts {
        request: Duration::from_secs(10),
        upload_idle: Duration::from_secs(10),
        long_poll: Duration::from_secs(secs),
    }
}

const SHORT: Timeouts = long_polls_of(3);

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

/// Long enough that a poll nobody woke answers its old revision, late.
const LONG: Timeouts = long_polls_of(30);

/// A move changes the desired state of its target (the arrival) and of the
/// hosts sharing the server's network (their VXLAN peers now name the
/// target): their long polls are woken and answer the new state. A poll
/// nobody wakes answers its old revision at its timeout, which fails here.
#[tokio::test]
async fn a_move_wakes_its_target_and_the_hosts_of_its_network() {
    let cloud = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            timeouts: LONG,
            ..Default::default()
        },
    )
    .await;
    let admin = cloud.admin("root").await;
    let alice = super::placement::tenant(&cloud, "alice").await;
    // Three hosts with underlay addresses, as agents register them.
    let mut hosts = Vec::new();
    for i in 1..=3 {
        let mut body = host_body();
        body["name"] = json!(format!("h{i}"));
        body["url"] = json!(format!("https://127.0.0.{i}:9"));
        let (host, client) = cloud.join(&body).await;
        body["tunnel_ip"] = json!(format!("172.31.0.1{i}"));
        let resp = cloud
            .agent_req_as(&client, Method::POST, "/v1/agent/hosts")
            .json(&body)
            .send()
            .await
            .unwrap();
        ok_json(resp, StatusCode::OK).await;
        hosts.push((id(&host).to_owned(), client));
    }
    let switch = |host: usize, on: bool| {
        let path = format!(
            "/v1/hosts/{}/{}",
            hosts[host].0,
            if on { "enable" } else { "disable" }
        );
        let admin = admin.clone();
        let cloud = &cloud;
        async move {
            ok_json(
                cloud.post(Some(&admin), &path, &json!({})).await,
                StatusCode::OK,
            )
            .await;
        }
    };
    let create = |name: &'static str| {
        let alice = alice.clone();
        let cloud = &cloud;
        async move {
            let body = json!({"name": name, "image": "disk", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
            let server = ok_json(
                cloud.post(Some(&alice), "/v1/servers", &body).await,
                StatusCode::ACCEPTED,
            )
            .await;
            id(&server).to_owned()
        }
    };
    // The mover on h1, a peer of its network on h3, nothing on h2.
    switch(1, false).await;
    switch(2, false).await;
    let mover = create("mover").await;
    switch(2, true).await;
    switch(0, false).await;
    create("peer").await;
    switch(0, true).await;
    switch(1, true).await;
    let resp = cloud
        .post(
            Some(&alice),
            &format!("/v1/servers/{mover}/stop"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let desired = |host: usize, after: Option<u64>| {
        let path = match after {
            Some(after) => format!("/v1/agent/hosts/{}/desired?after={after}", hosts[host].0),
            None => format!("/v1/agent/hosts/{}/desired", hosts[host].0),
        };
        let request = cloud.agent_req_as(&hosts[host].1, Method::GET, &path);
        async move { ok_json(request.send().await.unwrap(), StatusCode::OK).await }
    };
    let (target_before, peer_before) = (desired(1, None).await, desired(2, None).await);
    assert_eq!(target_before["instances"], json!([]), "{target_before}");
    let peers_before = peer_before["networks"][0]["overlay"]["peers"].clone();
    assert_eq!(
        peers_before[0]["tunnel_ip"], "172.31.0.11",
        "the peer host sees the mover on h1 first: {peer_before}"
    );
    let mac = peers_before[0]["macs"][0].clone();

    let target_poll = desired(1, target_before["revision"].as_u64());
    let peer_poll = desired(2, peer_before["revision"].as_u64());
    let migrate = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let resp = cloud
            .post(
                Some(&alice),
                &format!("/v1/servers/{mover}/migrate"),
                &json!({}),
            )
            .await;
        let migration = ok_json(resp, StatusCode::ACCEPTED).await;
        assert_eq!(migration["target_host"].as_str(), Some(hosts[1].0.as_str()));
    };
    let (target_after, peer_after, ()) = tokio::join!(target_poll, peer_poll, migrate);
    assert_ne!(
        target_after["revision"], target_before["revision"],
        "the target's poll was not woken: {target_after}"
    );
    let arriving = &target_after["instances"][0];
    assert_eq!(
        arriving["id"].as_str(),
        Some(mover.as_str()),
        "{target_after}"
    );
    assert_eq!(arriving["arrival"]["kind"], "copy", "{target_after}");
    assert_ne!(
        peer_after["revision"], peer_before["revision"],
        "the poll of a host of the mover's network was not woken: {peer_after}"
    );
    let peers = &peer_after["networks"][0]["overlay"]["peers"];
    assert_eq!(
        peers,
        &json!([{"tunnel_ip": "172.31.0.12", "macs": [mac]}]),
        "the peer host now sends the mover's frames to h2: {peer_after}"
    );
}
