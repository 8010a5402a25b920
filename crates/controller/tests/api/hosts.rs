//! Hosts (admin): state, capacity, allocation, disable/enable; placement
//! filters seen through the API: disabled and down hosts get nothing,
//! server groups place by their policy and are private to their project.

use super::placement::{register_hosts, tenant, vcpus_by_host};
use super::*;

/// A cloud whose hosts count as down 2 s after their last heartbeat.
pub(crate) async fn quick_down_cloud() -> Cloud {
    Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            placement: nubis_controller::scheduler::PlacementSettings {
                host_down_after: Duration::from_secs(2),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
}

fn small(name: &str) -> Value {
    json!({"name": name, "image": "disk", "vcpus": 1, "memory_mib": 128, "disk_gib": 1})
}

/// The name of the host `server` (a create's answer) was placed on.
async fn host_of(cloud: &Cloud, admin: &str, server: &Value) -> String {
    let host = server["host"]
        .as_str()
        .expect("a placed server names its host");
    cloud.get_ok(admin, &format!("/v1/hosts/{host}")).await["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn hosts_are_admin_only_and_show_state_capacity_and_allocation() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    let hosts = register_hosts(&cloud, 1).await;
    let host_id = id(&hosts[0]).to_owned();
    let server = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &small("web")).await,
        StatusCode::ACCEPTED,
    )
    .await;
    // Tenants: 403 on every host route.
    for (method, path) in [
        (Method::GET, "/v1/hosts".to_owned()),
        (Method::GET, format!("/v1/hosts/{host_id}")),
        (Method::POST, format!("/v1/hosts/{host_id}/disable")),
        (Method::POST, format!("/v1/hosts/{host_id}/enable")),
    ] {
        let resp = cloud.send(method, &path, Some(&alice)).await;
        assert_error(&path, resp, FORBIDDEN, "admin").await;
    }
    let listed = cloud.get_ok(&admin, "/v1/hosts").await;
    let h = &listed[0];
    assert_eq!(h["name"], "h1", "{listed}");
    assert_eq!(h["state"], "up");
    assert_eq!(h["enabled"], true);
    assert_eq!(
        (h["vcpus"].as_u64(), h["memory_mib"].as_u64()),
        (Some(2), Some(4096))
    );
    assert_eq!(h["accel"], "tcg");
    assert_eq!(h["cpu_model"], "Test CPU");
    assert_eq!(
        h["allocated"],
        json!({"vcpus": 1, "memory_mib": 128, "disk_gib": 1})
    );
    assert_eq!(h["instances"], 1);
    assert_eq!(
        cloud.get_ok(&admin, &format!("/v1/hosts/{host_id}")).await,
        *h
    );
    let resp = cloud
        .get(&admin, &format!("/v1/hosts/{}", nubis_api::HostId::new()))
        .await;
    assert_error("unknown host", resp, NOT_FOUND, "host not found").await;
    // The server's events say where it was scheduled.
    let events = cloud
        .get_ok(&alice, &format!("/v1/servers/{}/events", id(&server)))
        .await;
    assert_eq!(events[0]["kind"], "scheduled", "{events}");
    assert_eq!(events[0]["message"], "scheduled on host h1");
}

#[tokio::test]
async fn a_disabled_host_gets_no_new_servers() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    let hosts = register_hosts(&cloud, 2).await;
    let h1 = id(&hosts[0]).to_owned();
    let h2 = id(&hosts[1]).to_owned();
    let resp = cloud
        .post(
            Some(&admin),
            &format!("/v1/hosts/{h1}/disable"),
            &json!({"reason": "new RAM"}),
        )
        .await;
    let disabled = ok_json(resp, StatusCode::OK).await;
    assert_eq!(
        (
            disabled["enabled"].clone(),
            disabled["disabled_reason"].clone()
        ),
        (json!(false), json!("new RAM"))
    );
    for i in 0..4 {
        let server = ok_json(
            cloud
                .post(Some(&alice), "/v1/servers", &small(&format!("s{i}")))
                .await,
            StatusCode::ACCEPTED,
        )
        .await;
        assert_eq!(host_of(&cloud, &admin, &server).await, "h2");
    }
    // With both disabled (no body: the reason is optional) nothing fits,
    // and the refusal says why.
    let resp = cloud
        .send(
            Method::POST,
            &format!("/v1/hosts/{h2}/disable"),
            Some(&admin),
        )
        .await;
    assert_eq!(ok_json(resp, StatusCode::OK).await["enabled"], false);
    // A JSON `null` body is no body too (schemathesis sends one).
    let resp = cloud
        .post(
            Some(&admin),
            &format!("/v1/hosts/{h2}/disable"),
            &json!(null),
        )
        .await;
    assert_eq!(ok_json(resp, StatusCode::OK).await["enabled"], false);
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &small("none"))
        .await;
    assert_error("all disabled", resp, NO_CAPACITY, "2 host(s) disabled").await;
    // Positive control: enabled again, h1 (emptier) takes the next one.
    let resp = cloud
        .send(
            Method::POST,
            &format!("/v1/hosts/{h1}/enable"),
            Some(&admin),
        )
        .await;
    let enabled = ok_json(resp, StatusCode::OK).await;
    assert_eq!(enabled["enabled"], true);
    assert!(enabled.get("disabled_reason").is_none(), "{enabled}");
    let server = ok_json(
        cloud
            .post(Some(&alice), "/v1/servers", &small("back"))
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(host_of(&cloud, &admin, &server).await, "h1");
    assert_eq!(vcpus_by_host(&cloud, &admin).await["h2"], 4);
}

#[tokio::test]
async fn a_silent_host_goes_down_and_gets_nothing() {
    let cloud = quick_down_cloud().await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    let hosts = register_hosts(&cloud, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cloud.get_ok(&admin, "/v1/hosts").await[0]["state"], "down");
    let resp = cloud.post(Some(&alice), "/v1/servers", &small("web")).await;
    assert_error("host down", resp, NO_HOSTS, "no host is up").await;
    // Positive control: a report (a heartbeat) brings it up again.
    let resp = cloud
        .agent_req(
            Method::PUT,
            &format!("/v1/agent/hosts/{}/report", id(&hosts[0])),
        )
        .json(&json!({"instances": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(cloud.get_ok(&admin, "/v1/hosts").await[0]["state"], "up");
    let resp = cloud.post(Some(&alice), "/v1/servers", &small("web")).await;
    ok_json(resp, StatusCode::ACCEPTED).await;
}

#[tokio::test]
async fn server_groups_place_by_policy_and_stay_in_their_project() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    let bob = tenant(&cloud, "bob").await;
    register_hosts(&cloud, 3).await;
    let group = |name: &str, policy: &str| json!({"name": name, "policy": policy});
    let resp = cloud
        .post(Some(&alice), "/v1/server-groups", &group("db", "affinity"))
        .await;
    let together = ok_json(resp, StatusCode::CREATED).await;
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/server-groups",
            &group("web", "anti-affinity"),
        )
        .await;
    let apart = ok_json(resp, StatusCode::CREATED).await;
    let cases = [
        case(
            "bad policy",
            group("x", "soft-affinity"),
            INVALID,
            "unknown variant",
        ),
        case(
            "duplicate",
            group("db", "affinity"),
            CONFLICT,
            "already exists",
        ),
    ];
    for c in &cases {
        let resp = cloud.post(Some(&alice), "/v1/server-groups", &c.body).await;
        assert_error(&c.what, resp, c.want, c.mention).await;
    }
    let in_group = |name: String, group: &Value| {
        let mut body = small(&name);
        body["scheduler_hints"] = json!({"group": id(group)});
        body
    };
    // Affinity: every member on the first one's host (spread alone would
    // put them on three different hosts).
    let mut hosts = Vec::new();
    for i in 0..3 {
        let resp = cloud
            .post(
                Some(&alice),
                "/v1/servers",
                &in_group(format!("db{i}"), &together),
            )
            .await;
        let server = ok_json(resp, StatusCode::ACCEPTED).await;
        hosts.push(host_of(&cloud, &admin, &server).await);
    }
    assert!(hosts.iter().all(|h| *h == hosts[0]), "{hosts:?}");
    // Anti-affinity: three members on three hosts, a fourth has nowhere to go.
    let mut hosts = std::collections::BTreeSet::new();
    for i in 0..3 {
        let resp = cloud
            .post(
                Some(&alice),
                "/v1/servers",
                &in_group(format!("web{i}"), &apart),
            )
            .await;
        let server = ok_json(resp, StatusCode::ACCEPTED).await;
        hosts.insert(host_of(&cloud, &admin, &server).await);
    }
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/servers",
            &in_group("web3".into(), &apart),
        )
        .await;
    assert_error(
        "4th anti-affine",
        resp,
        NO_CAPACITY,
        "server group's policy",
    )
    .await;
    let shown = cloud
        .get_ok(&alice, &format!("/v1/server-groups/{}", id(&apart)))
        .await;
    assert_eq!(shown["members"].as_array().unwrap().len(), 3, "{shown}");
    assert_eq!(shown["policy"], "anti-affinity");
    // Another project sees none of it.
    let path = format!("/v1/server-groups/{}", id(&apart));
    assert_error(
        "bob shows",
        cloud.get(&bob, &path).await,
        NOT_FOUND,
        "server group not found",
    )
    .await;
    let resp = cloud.send(Method::DELETE, &path, Some(&bob)).await;
    assert_error("bob deletes", resp, NOT_FOUND, "server group not found").await;
    assert_eq!(cloud.get_ok(&bob, "/v1/server-groups").await, json!([]));
    let resp = cloud
        .post(Some(&bob), "/v1/servers", &in_group("sneak".into(), &apart))
        .await;
    assert_error("bob joins", resp, BAD, "server group").await;
    // A group with members cannot go; an empty one can.
    let resp = cloud.send(Method::DELETE, &path, Some(&alice)).await;
    assert_error("members", resp, CONFLICT, "member").await;
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/server-groups",
            &group("empty", "affinity"),
        )
        .await;
    let empty = ok_json(resp, StatusCode::CREATED).await;
    let resp = cloud
        .send(
            Method::DELETE,
            &format!("/v1/server-groups/{}", id(&empty)),
            Some(&alice),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        cloud
            .get_ok(&alice, "/v1/server-groups")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn server_groups_count_against_the_quota() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    for i in 0..10 {
        let resp = cloud
            .post(
                Some(&alice),
                "/v1/server-groups",
                &json!({"name": format!("g{i}"), "policy": "affinity"}),
            )
            .await;
        ok_json(resp, StatusCode::CREATED).await;
    }
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/server-groups",
            &json!({"name": "g10", "policy": "affinity"}),
        )
        .await;
    assert_error(
        "11th group",
        resp,
        (StatusCode::FORBIDDEN, "quota_exceeded"),
        "server_groups",
    )
    .await;
    let quotas = cloud.get_ok(&alice, "/v1/projects/current/quotas").await;
    assert_eq!(quotas["in_use"]["server_groups"], 10, "{quotas}");
}

#[tokio::test]
async fn the_portal_hosts_page_lists_and_toggles_hosts_for_admins_only() {
    use reqwest::header::{COOKIE, LOCATION};
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    let hosts = register_hosts(&cloud, 1).await;
    let h1 = id(&hosts[0]).to_owned();
    ok_json(
        cloud.post(Some(&alice), "/v1/servers", &small("web")).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = |token: &str| {
        http.get(format!("{}/admin/hosts", cloud.base))
            .header(COOKIE, format!("nubis_session={token}"))
            .send()
    };
    // A tenant gets the portal's 404 page.
    let resp = page(&alice).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let html = page(&admin).await.unwrap().text().await.unwrap();
    // vCPUs placed / reported, memory, state, switch, CPU model, button.
    for want in [
        "h1",
        "1 / 2",
        "128 / 4096 MiB",
        "up",
        "enabled",
        "Test CPU",
        "tcg",
        "Disable",
    ] {
        assert!(html.contains(want), "{want} missing: {html}");
    }
    let csrf = html
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field")
        .to_owned();
    let post = |form: Vec<(&'static str, String)>| {
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http.post(format!("{}/admin/hosts/{h1}/disable", cloud.base))
            .header(COOKIE, format!("nubis_session={admin}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(super::accounts::form_body(&fields))
            .send()
    };
    // Without the page's CSRF token nothing changes.
    let resp = post(vec![("reason", "x".into())]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(cloud.get_ok(&admin, "/v1/hosts").await[0]["enabled"], true);
    // Positive control: with it, the host is disabled with the reason.
    let resp = post(vec![("_csrf", csrf), ("reason", "disk swap".into())])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/admin/hosts?done=disabled");
    let host = &cloud.get_ok(&admin, "/v1/hosts").await[0];
    assert_eq!(
        (host["enabled"].clone(), host["disabled_reason"].clone()),
        (json!(false), json!("disk swap"))
    );
    let html = page(&admin).await.unwrap().text().await.unwrap();
    assert!(
        html.contains("disabled: disk swap") && html.contains("Enable"),
        "{html}"
    );
}

#[tokio::test]
async fn pack_fills_one_host_first_and_accel_hints_filter() {
    let cloud = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            placement: nubis_controller::scheduler::PlacementSettings {
                weigher: nubis_controller::scheduler::Weigher::Pack,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    register_hosts(&cloud, 2).await;
    let mut on = std::collections::BTreeSet::new();
    for i in 0..3 {
        let server = ok_json(
            cloud
                .post(Some(&alice), "/v1/servers", &small(&format!("p{i}")))
                .await,
            StatusCode::ACCEPTED,
        )
        .await;
        on.insert(host_of(&cloud, &admin, &server).await);
    }
    // Spread would have used both hosts.
    assert_eq!(on.len(), 1, "{on:?}");
    // Only tcg hosts here: asking for kvm finds none, saying why.
    let mut kvm = small("kvm");
    kvm["scheduler_hints"] = json!({"accel": "kvm"});
    let resp = cloud.post(Some(&alice), "/v1/servers", &kvm).await;
    assert_error("kvm", resp, NO_CAPACITY, "without the accelerator").await;
    kvm["scheduler_hints"] = json!({"accel": "tcg"});
    let resp = cloud.post(Some(&alice), "/v1/servers", &kvm).await;
    ok_json(resp, StatusCode::ACCEPTED).await;
}
