//! Networks across hosts, end to end: a controller and three agents, each
//! in its own network namespace ("host"), joined by an underlay bridge
//! (tests/support/multihost.rs).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::multihost::{self, Options};

const BOOT: Duration = Duration::from_secs(240);

/// The harness itself: three hosts join and register, each reaches the
/// others over the underlay, and a server boots on one of them (its
/// console log comes from that host's agent through the controller).
#[test]
fn three_hosts_join_and_run_a_server() {
    multihost::run("mh-smoke", Options::hosts(3), |mut cloud| async move {
        cloud.create_admin_and_login("root", "root-password").await;
        let (s, hosts) = cloud.call(Method::GET, "/v1/hosts", None).await;
        assert_eq!(s, StatusCode::OK, "{hosts}");
        let names: Vec<&str> = hosts
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["name"].as_str())
            .collect();
        for i in 0..3 {
            assert!(names.contains(&multihost::host_name(i).as_str()), "{hosts}");
        }
        // The underlay joins the hosts (positive control for later checks).
        let out = cloud.run_on(0, "ping", &["-c", "1", "-W", "2", "172.31.0.13"]);
        assert!(out.status.success(), "host-0 cannot ping host-2");

        cloud.upload_tiny_image();
        let (id, _) = cloud
            .create_server(json!({"name": "s1", "image": "tiny", "flavor": "tiny"}))
            .await;
        cloud.wait_status(&id, "running", BOOT).await;
        cloud.wait_console(&id, "boot-count: 1", BOOT).await;
        let placed = cloud.host_of(&id).await.expect("placed on a host");
        assert_eq!(cloud.host_holding(&id), Some(placed));
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        support::wait_for("the delete", BOOT, || async {
            let (s, _) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (s == StatusCode::NOT_FOUND && cloud.host_holding(&id).is_none()).then_some(())
        })
        .await;
    });
}
