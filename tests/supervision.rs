//! `nubis up` under supervision, end to end in a network namespace: the
//! process answers `/healthz`, and `/readyz` is 200 once the agent has
//! reported, listing the host's report age and every supervised task.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use support::cloud::Cloud;
use support::netns::{run_in, run_in_netns, NetNs};

/// Every background task of `nubis up`.
const TASKS: [&str; 7] = [
    "agent API",
    "agent protocol",
    "controller API",
    "metadata service",
    "reconcile loop",
    "report loop",
    "terms keeper",
];

#[test]
fn nubis_up_is_healthy_and_ready_with_its_agents_report_age() {
    run_in_netns("supervision", || async {
        let cloud = Cloud::start_with(&["--stale-report-after", "60"]).await;

        let (status, body) = cloud.call(Method::GET, "/healthz", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, serde_json::json!({"status": "ok"}));

        // Ready once the agent has registered and reported.
        let ready: Value = support::wait_for("/readyz to be 200", Duration::from_secs(120), || {
            let cloud = &cloud;
            async move {
                let (status, body) = cloud.call(Method::GET, "/readyz", None).await;
                let has_host = body["hosts"].as_array().is_some_and(|h| h.len() == 1);
                (status == StatusCode::OK && has_host).then_some(body)
            }
        })
        .await;
        assert_eq!(ready["status"], "ready", "{ready}");
        assert_eq!(ready["store"], "ok");
        assert_eq!(ready["reasons"], serde_json::json!([]));
        let host = &ready["hosts"][0];
        let age = host["report_age_seconds"]
            .as_i64()
            .unwrap_or_else(|| panic!("no report age: {ready}"));
        assert!((0..=60).contains(&age), "{ready}");
        assert_eq!(host["stale"], false);
        assert!(host["last_seen"].is_string(), "{ready}");
        let tasks: BTreeSet<&str> = ready["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                assert_eq!(t["state"], "running", "{t}");
                t["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(tasks, BTreeSet::from(TASKS), "{ready}");

        // Positive control: the same API refuses what needs a token.
        let (status, _) = cloud.call(Method::GET, "/v1/users/me", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    });
}

/// `ip netns add try && ip netns exec try make up`, as the developers' guide
/// says to try it: a fresh namespace has its loopback down, and the agent
/// could not reach the controller at 127.0.0.1. The agent brings it up.
#[test]
fn nubis_up_in_a_namespace_with_loopback_down_brings_it_up() {
    let ns = NetNs::with_loopback_down("loopback");
    let flags = std::process::Command::new("ip")
        .args(["-n", &ns.name, "-o", "link", "show", "lo"])
        .output()
        .expect("ip link show lo");
    let flags = String::from_utf8_lossy(&flags.stdout).into_owned();
    assert!(!flags.contains("UP,"), "loopback starts down: {flags}");
    run_in(ns, || async {
        let cloud = Cloud::start().await;
        support::wait_for("/readyz to list the host", Duration::from_secs(120), || {
            let cloud = &cloud;
            async move {
                let (status, body) = cloud.call(Method::GET, "/readyz", None).await;
                let has_host = body["hosts"].as_array().is_some_and(|h| h.len() == 1);
                (status == StatusCode::OK && has_host).then_some(())
            }
        })
        .await;
        assert!(
            cloud.log().contains("loopback was down; brought it up"),
            "{}",
            cloud.log()
        );
    });
}
