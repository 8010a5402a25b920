//! `/healthz` and `/readyz`: outside `/v1` and its authentication; readiness
//! follows the hosts' last reports and the supervised tasks.

use super::*;
use nubis_supervise::BackgroundTask;

async fn health(cloud: &Cloud, path: &str) -> (StatusCode, Value) {
    let resp = cloud.send(Method::GET, path, None).await;
    let status = resp.status();
    (status, resp.json().await.expect("a JSON body"))
}

/// Polls `/readyz` until `done` holds (a generous bound); returns the last answer.
async fn readyz_until(
    cloud: &Cloud,
    what: &str,
    mut before: impl AsyncFnMut(),
    done: impl Fn(StatusCode, &Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        before().await;
        let (status, body) = health(cloud, "/readyz").await;
        if done(status, &body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: last answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn healthz_answers_without_a_token() {
    let cloud = Cloud::start().await;
    let (status, body) = health(&cloud, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
    // Positive control that auth is still enforced under /v1.
    let resp = cloud.send(Method::GET, "/v1/users/me", None).await;
    assert_error("no token under /v1", resp, UNAUTHORIZED, "Authorization").await;
}

/// Ready with no hosts; not ready once a registered host stops reporting;
/// ready again after it reports.
#[tokio::test]
async fn readyz_follows_the_age_of_host_reports() {
    let cloud = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            readiness: Readiness {
                stale_report_after: Duration::from_secs(2),
            },
            ..Default::default()
        },
    )
    .await;
    let (status, body) = health(&cloud, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"], "ok");
    assert_eq!(body["reasons"], json!([]));
    let tasks: BTreeSet<&str> = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["state"], "running", "{t}");
            t["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        tasks,
        BTreeSet::from(["controller API", "agent protocol", "terms keeper"])
    );

    let host = cloud.register_host().await;
    let host_id = id(&host).to_owned();
    let name = host["name"].as_str().unwrap().to_owned();
    // Nobody reports for this host: it goes stale.
    let body = readyz_until(
        &cloud,
        "a silent host makes the cloud not ready",
        async || {},
        |s, _| s == StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(body["status"], "not_ready");
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    assert!(
        reasons[0]
            .as_str()
            .unwrap()
            .contains(&format!("host '{name}'")),
        "{body}"
    );
    assert_eq!(body["hosts"][0]["stale"], true, "{body}");
    assert!(body["hosts"][0]["report_age_seconds"].as_i64().unwrap() > 2);

    // It reports again: ready (report, then ask, until one ask is in time).
    let report = async || {
        let resp = cloud
            .agent_req(Method::PUT, &format!("/v1/agent/hosts/{host_id}/report"))
            .json(&json!({"instances": []}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "report: {}", resp.status());
    };
    let body = readyz_until(&cloud, "a reporting host is fresh", report, |s, _| {
        s == StatusCode::OK
    })
    .await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["hosts"][0]["name"], name.as_str());
    assert_eq!(body["hosts"][0]["stale"], false);
    assert!(body["hosts"][0]["report_age_seconds"].as_i64().unwrap() <= 2);
}

/// A supervised task that died makes the cloud not ready, naming it and its
/// error; the process is still up (`/healthz` 200).
#[tokio::test]
async fn readyz_is_503_while_a_background_task_is_dead() {
    let mut cloud = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            // No restarts: the first failure is final.
            policy: Policy {
                budget: 0,
                ..Policy::DEFAULT
            },
            ..Default::default()
        },
    )
    .await;
    let (status, body) = health(&cloud, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    cloud
        .supervisor
        .spawn(BackgroundTask::new("doomed", || async {
            anyhow::bail!("lost its database connection")
        }));
    let body = readyz_until(
        &cloud,
        "a dead task",
        async || {},
        |s, _| s == StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    let reason = reasons[0].as_str().unwrap();
    assert!(
        reason.contains("'doomed'") && reason.contains("lost its database connection"),
        "{reason}"
    );
    let doomed = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "doomed")
        .expect("the task is listed");
    assert_eq!(doomed["state"], "failed");
    let (status, _) = health(&cloud, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}
