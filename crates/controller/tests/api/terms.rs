//! Rental terms: bandwidth, traffic quotas, leases.

use super::*;

/// Sends `body` with `method` to `path` as `token`.
async fn send_json(
    cloud: &Cloud,
    method: Method,
    token: &str,
    path: &str,
    body: &Value,
) -> Response {
    cloud
        .req(method, path, Some(token))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rental_terms_reject_bad_input_and_change_nothing() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; MIB])
        .await;
    let valid = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let rate = "average_mbit must be between 1 and 100000";
    let quota = "monthly_gib must be between";
    #[rustfmt::skip]
    let create_cases = vec![
        case("rate 0", v("bandwidth", json!({"inbound": {"average_mbit": 0}})), INVALID, rate),
        case("rate -5", v("bandwidth", json!({"outbound": {"average_mbit": -5}})), INVALID, rate),
        case("rate 10^6", v("bandwidth", json!({"outbound": {"average_mbit": 1_000_000}})), INVALID, rate),
        case("peak below average", v("bandwidth", json!({"inbound": {"average_mbit": 10, "peak_mbit": 5}})), INVALID, "peak_mbit"),
        case("burst 0", v("bandwidth", json!({"inbound": {"average_mbit": 10, "burst_kib": 0}})), INVALID, "burst_kib"),
        case("unknown direction", v("bandwidth", json!({"up": {"average_mbit": 10}})), INVALID, "unknown field"),
        case("quota 0", v("traffic_quota", json!({"monthly_gib": 0})), INVALID, quota),
        case("quota -1", v("traffic_quota", json!({"monthly_gib": -1})), INVALID, quota),
        case("quota 10^12", v("traffic_quota", json!({"monthly_gib": 1e12})), INVALID, quota),
        case("quota policy", v("traffic_quota", json!({"monthly_gib": 1, "policy": "explode"})), INVALID, "policy"),
        case("lease 0 s", v("lease", json!({"duration_seconds": 0})), INVALID, "duration_seconds"),
        case("lease -60 s", v("lease", json!({"duration_seconds": -60})), INVALID, "duration_seconds"),
        case("lease 100 years", v("lease", json!({"duration_seconds": 3_200_000_000i64})), INVALID, "duration_seconds"),
        case("lease in the past", v("lease", json!({"expires_at": "2001-01-01T00:00:00Z"})), BAD, "in the past"),
        case("lease both", v("lease", json!({"duration_seconds": 60, "expires_at": "2099-01-01T00:00:00Z"})), INVALID, "not both"),
        case("lease empty", v("lease", json!({})), INVALID, "duration_seconds or expires_at"),
    ];
    cloud.refuse_all(&alice, "/v1/servers", &create_cases).await;

    let server = ok_json(
        cloud
            .post(
                Some(&alice),
                "/v1/servers",
                &v("bandwidth", json!({"inbound": {"average_mbit": 10}})),
            )
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(server["bandwidth"]["inbound"]["average_mbit"], 10);
    let path = format!("/v1/servers/{}", id(&server));
    let before = cloud.get_ok(&alice, &path).await;
    let strip = |mut s: Value| {
        // Observed fields may change on their own; the terms may not.
        for k in ["status", "launched_at", "fault"] {
            s.as_object_mut().unwrap().remove(k);
        }
        s
    };
    #[rustfmt::skip]
    let patch_cases = [
        ("rate 0", json!({"bandwidth": {"inbound": {"average_mbit": 0}}}), INVALID, rate),
        ("rate -1", json!({"bandwidth": {"outbound": {"average_mbit": -1}}}), INVALID, rate),
        ("quota absurd", json!({"traffic_quota": {"monthly_gib": 1e300}}), INVALID, quota),
        ("quota negative", json!({"traffic_quota": {"monthly_gib": -3}}), INVALID, quota),
        ("rename", json!({"name": "other"}), INVALID, "unknown field"),
        ("nothing", json!({}), BAD, "nothing to change"),
    ];
    for (what, body, want, mention) in patch_cases {
        let resp = send_json(&cloud, Method::PATCH, &alice, &path, &body).await;
        assert_error(what, resp, want, mention).await;
        assert_eq!(
            strip(cloud.get_ok(&alice, &path).await),
            strip(before.clone()),
            "{what}"
        );
    }
    // Another project's server is not there; bob cannot change it.
    let body = json!({"bandwidth": {}});
    let resp = send_json(&cloud, Method::PATCH, &bob, &path, &body).await;
    assert_error("bob's patch", resp, NOT_FOUND, "server").await;

    let lease = format!("{path}/lease");
    #[rustfmt::skip]
    let lease_cases = [
        ("past", &alice, json!({"term": {"expires_at": "2001-01-01T00:00:00Z"}}), BAD, "in the past"),
        ("too soon", &alice, json!({"term": {"duration_seconds": 5}}), INVALID, "duration_seconds"),
        ("exempt by a user", &alice, json!({"exempt": true}), FORBIDDEN, "admin"),
        ("nothing", &alice, json!({}), BAD, "nothing to change"),
        ("other project", &bob, json!({"term": {"duration_seconds": 3600}}), NOT_FOUND, "server"),
    ];
    for (what, token, body, want, mention) in lease_cases {
        let resp = send_json(&cloud, Method::POST, token, &lease, &body).await;
        assert_error(what, resp, want, mention).await;
        assert_eq!(
            strip(cloud.get_ok(&alice, &path).await),
            strip(before.clone()),
            "{what}"
        );
    }
    // An admin may exempt and extend anyone's server.
    let body = json!({"exempt": true, "term": {"duration_seconds": 7200}});
    let s = ok_json(
        send_json(&cloud, Method::POST, &admin, &lease, &body).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(s["lease"]["exempt"], true, "{s}");

    // Usage: bad periods, other projects.
    for bad in ["2026-13", "x", "2026-1"] {
        let resp = cloud
            .get(&alice, &format!("{path}/usage?period={bad}"))
            .await;
        assert_error(bad, resp, BAD, "period").await;
    }
    let resp = cloud.get(&bob, &format!("{path}/usage")).await;
    assert_error("bob's usage", resp, NOT_FOUND, "server").await;
    let alice_project = server["project"].as_str().unwrap();
    let resp = cloud
        .get(&bob, &format!("/v1/projects/{alice_project}/usage"))
        .await;
    assert_error("bob reads alice's project", resp, NOT_FOUND, "project").await;
    let usage = cloud.get_ok(&alice, &format!("{path}/usage")).await;
    assert_eq!(usage["total_bytes"], 0);
    let events = cloud.get_ok(&alice, &format!("{path}/events")).await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["scheduled", "lease_exempted", "lease_renewed"],
        "{events}"
    );
}
