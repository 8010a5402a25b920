//! The audit trail (`GET /v1/audit`): a create, a delete, a failed login
//! and a refusal are recorded with user, source address, action, object and
//! result; no password, token or user data reaches the trail or the
//! database; members read only their project's records; filters,
//! pagination, JSON lines and retention.

use super::*;

const WRONG_PASSWORD: &str = "a wrong password 9f3c1e";
/// `#!/bin/sh\necho secret-user-data-5d1a\n`, base64.
const USER_DATA: &str = "IyEvYmluL3NoCmVjaG8gc2VjcmV0LXVzZXItZGF0YS01ZDFhCg==";

/// Every record `token` may read with `query` (`&`-joined filters), newest
/// first, following the pages.
async fn trail(cloud: &Cloud, token: &str, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?limit=1000&{query}");
        if let Some(m) = &marker {
            path.push_str(&format!("&marker={m}"));
        }
        let page = cloud.get_ok(token, &path).await;
        all.extend(page["events"].as_array().expect("events").iter().cloned());
        match page["next_marker"].as_str() {
            Some(m) => marker = Some(m.to_owned()),
            None => return all,
        }
    }
}

/// The records of `action`.
fn of<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}

/// The records whose `field` is `value`.
fn keep(events: &[Value], field: &str, value: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e[field] == value)
        .cloned()
        .collect()
}

/// A cloud with an admin (`root`, made in the store), a member (`bob`),
/// a host and an image of bob's.
async fn cloud_with_users() -> (Cloud, String, String) {
    let cloud = Cloud::start().await;
    let root = cloud.admin("root").await;
    let bob = cloud.user("bob").await;
    cloud.register_host().await;
    cloud.active_image(&bob, "disk", "raw", vec![0; 4096]).await;
    (cloud, root, bob)
}

#[tokio::test]
async fn trail_shows_create_delete_failed_login_and_refusal_without_secrets() {
    let (cloud, root, bob) = cloud_with_users().await;
    let me = cloud.get_ok(&bob, "/v1/users/me").await;
    let user_data = USER_DATA.to_owned();
    let body = json!({"name": "web", "image": "disk", "vcpus": 1, "memory_mib": 128,
        "disk_gib": 1, "user_data": user_data});
    let server = ok_json(
        cloud.post(Some(&bob), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let server_id = id(&server).to_owned();
    let deleted = cloud
        .send(
            Method::DELETE,
            &format!("/v1/servers/{server_id}"),
            Some(&bob),
        )
        .await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let delete_request_id = deleted.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let failed = cloud.login("bob", WRONG_PASSWORD).await;
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    let unknown = cloud.login("nobody-at-all", WRONG_PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let flavor = json!({"name": "huge", "vcpus": 2, "memory_mib": 256, "disk_gib": 2});
    let refused = cloud.post(Some(&bob), "/v1/flavors", &flavor).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let bad_token = cloud
        .post(Some("nbs_not-a-token"), "/v1/servers", &body)
        .await;
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
    // Positive control of the refusal: the admin may create the flavor.
    let made = cloud.post(Some(&root), "/v1/flavors", &flavor).await;
    assert_eq!(made.status(), StatusCode::CREATED);

    let events = trail(&cloud, &root, "").await;
    let bobs_fields = |e: &Value, what: &str| {
        assert_eq!(e["user"], me["id"], "{what}: {e}");
        assert_eq!(e["user_name"], "bob", "{what}: {e}");
        assert_eq!(e["project"], me["project"], "{what}: {e}");
        assert_eq!(e["source_address"], "127.0.0.1", "{what}: {e}");
        assert_eq!(e["initiator"], "user", "{what}: {e}");
    };
    let create = of(&events, "server.create");
    assert_eq!(create.len(), 2, "{events:#?}");
    let ok_create = create.iter().find(|e| e["status"] == 202).expect("202");
    bobs_fields(ok_create, "create");
    assert_eq!(ok_create["object_type"], "server");
    assert_eq!(ok_create["object_id"], server_id.as_str());
    assert_eq!(ok_create["outcome"], "success");
    assert_eq!(ok_create["method"], "POST");
    assert_eq!(ok_create["path"], "/v1/servers");
    let anon_create = create.iter().find(|e| e["status"] == 401).expect("401");
    assert_eq!(anon_create["initiator"], "anonymous");
    assert_eq!(anon_create["outcome"], "denied");
    assert_eq!(anon_create["error"], "unauthorized");
    assert_eq!(anon_create["user"], Value::Null);

    let delete = of(&events, "server.delete");
    assert_eq!(delete.len(), 1, "{events:#?}");
    bobs_fields(delete[0], "delete");
    assert_eq!(delete[0]["object_id"], server_id.as_str());
    assert_eq!(delete[0]["outcome"], "success");
    assert_eq!(delete[0]["request_id"], delete_request_id.as_str());

    let logins = of(&events, "token.create");
    let failed: Vec<_> = logins.iter().filter(|e| e["status"] == 401).collect();
    assert_eq!(failed.len(), 2, "{logins:#?}");
    let bob_failed = failed
        .iter()
        .find(|e| e["user_name"] == "bob")
        .expect("bob's");
    bobs_fields(bob_failed, "failed login");
    assert_eq!(bob_failed["outcome"], "denied");
    let nobody = failed
        .iter()
        .find(|e| e["user_name"].is_null())
        .expect("unknown");
    assert_eq!(nobody["initiator"], "anonymous");
    assert_eq!(nobody["source_address"], "127.0.0.1");
    assert!(
        logins
            .iter()
            .any(|e| e["status"] == 201 && e["user_name"] == "bob"),
        "{logins:#?}"
    );
    let registered = of(&events, "user.create");
    assert!(
        registered.iter().any(|e| e["object_id"] == me["id"]),
        "{registered:#?}"
    );

    let flavors = of(&events, "flavor.create");
    let denied = flavors.iter().find(|e| e["status"] == 403).expect("403");
    bobs_fields(denied, "refusal");
    assert_eq!(denied["outcome"], "denied");
    assert_eq!(denied["error"], "forbidden");
    let allowed = flavors.iter().find(|e| e["status"] == 201).expect("201");
    assert_eq!(allowed["user_name"], "root");
    assert_eq!(allowed["object_id"], made_id(&cloud, &root).await.as_str());

    // Agents' joins are there too, reports are not (they succeed).
    let joins = of(&events, "agent.join");
    assert_eq!(joins.len(), 1, "{events:#?}");
    assert_eq!(joins[0]["initiator"], "agent");
    assert!(joins[0]["host"].is_string(), "{}", joins[0]);
    assert!(events.iter().all(|e| e["method"] != "GET"), "{events:#?}");

    // No secret anywhere: not in the trail (JSON and JSON lines) ...
    let raw = cloud
        .get(&root, "/v1/audit?limit=1000")
        .await
        .text()
        .await
        .unwrap();
    let lines = cloud
        .get(&root, "/v1/audit?format=jsonl&limit=10000")
        .await
        .text()
        .await
        .unwrap();
    assert!(raw.contains("server.create") && lines.contains("server.create"));
    let secrets = [
        PASSWORD,
        WRONG_PASSWORD,
        bob.as_str(),
        root.as_str(),
        "secret-user-data-5d1a",
        user_data.as_str(),
    ];
    for secret in secrets {
        assert!(!raw.contains(secret), "trail holds {secret:?}");
        assert!(!lines.contains(secret), "export holds {secret:?}");
    }
    // ... nor, for passwords and tokens, in the database files (which the
    // search does read: the server's id is found there).
    let holds = |bytes: &[u8], s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    let mut seen_server = false;
    for file in files_in(cloud.dir.path()) {
        if !file.starts_with("nubis.db") {
            continue;
        }
        let bytes = std::fs::read(cloud.dir.path().join(&file)).unwrap();
        seen_server |= holds(&bytes, &server_id);
        for secret in [PASSWORD, WRONG_PASSWORD, bob.as_str(), root.as_str()] {
            assert!(!holds(&bytes, secret), "{file} holds {secret:?}");
        }
    }
    assert!(seen_server, "the database files were not searched");
}

/// The id of the flavor `huge`.
async fn made_id(cloud: &Cloud, token: &str) -> String {
    let flavors = cloud.get_ok(token, "/v1/flavors").await;
    let huge = flavors
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "huge")
        .expect("huge");
    id(huge).to_owned()
}

#[tokio::test]
async fn members_read_only_their_own_projects_records() {
    let (cloud, root, bob) = cloud_with_users().await;
    let carol = cloud.user("carol").await;
    let keypair = json!({"name": "k"});
    let made = cloud.post(Some(&carol), "/v1/keypairs", &keypair).await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let me = cloud.get_ok(&bob, "/v1/users/me").await;
    let carol_me = cloud.get_ok(&carol, "/v1/users/me").await;

    let mine = trail(&cloud, &bob, "").await;
    assert!(!of(&mine, "image.create").is_empty(), "{mine:#?}");
    assert!(
        mine.iter().all(|e| e["project"] == me["project"]),
        "{mine:#?}"
    );
    let current = trail(&cloud, &bob, "project=current").await;
    assert_eq!(current, mine);
    // Another project's records: as if it did not exist, even by filter.
    let other = format!(
        "/v1/audit?project={}",
        carol_me["project"].as_str().unwrap()
    );
    assert_error(
        "other project",
        cloud.get(&bob, &other).await,
        NOT_FOUND,
        "project",
    )
    .await;
    let by_user = trail(&cloud, &bob, "user=carol").await;
    assert_eq!(by_user, Vec::<Value>::new());
    // Positive control: carol's records exist, and the admin reads them.
    let carols = trail(&cloud, &root, "user=carol").await;
    assert!(!of(&carols, "keypair.create").is_empty(), "{carols:#?}");
    let theirs = trail(
        &cloud,
        &root,
        &format!("project={}", carol_me["project"].as_str().unwrap()),
    )
    .await;
    assert_eq!(theirs, carols);
}

#[tokio::test]
async fn filters_pages_and_json_lines() {
    let (cloud, root, bob) = cloud_with_users().await;
    for name in ["k1", "k2", "k3"] {
        let made = cloud
            .post(Some(&bob), "/v1/keypairs", &json!({"name": name}))
            .await;
        assert_eq!(made.status(), StatusCode::CREATED);
    }
    let me = cloud.get_ok(&bob, "/v1/users/me").await;
    let all = trail(&cloud, &root, "").await;
    assert!(all.len() >= 8, "{all:#?}");
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");

    // Pages of two give the same records, in the same order, once each.
    let mut paged = Vec::new();
    let mut path = "/v1/audit?limit=2".to_owned();
    loop {
        let page = cloud.get_ok(&root, &path).await;
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        paged.extend(events.iter().cloned());
        match page["next_marker"].as_str() {
            Some(m) => path = format!("/v1/audit?limit=2&marker={m}"),
            None => break,
        }
    }
    assert_eq!(paged, all);

    // Filters, each against the full list.
    let bob_id = me["id"].as_str().unwrap().to_owned();
    let cases = [
        (
            "action=keypair.create",
            keep(&all, "action", "keypair.create"),
        ),
        ("user=bob", keep(&all, "user_name", "bob")),
        ("outcome=success", keep(&all, "outcome", "success")),
    ];
    for (query, want) in cases {
        assert!(!want.is_empty(), "{query}: nothing to find");
        assert_eq!(trail(&cloud, &root, query).await, want, "{query}");
    }
    let by_id = trail(&cloud, &root, &format!("user={bob_id}")).await;
    assert_eq!(by_id, trail(&cloud, &root, "user=bob").await);
    let project = format!("project={}", me["project"].as_str().unwrap());
    assert_eq!(
        trail(&cloud, &root, &project).await,
        trail(&cloud, &bob, "").await
    );
    let combined = trail(&cloud, &root, "user=bob&action=keypair.create").await;
    assert_eq!(combined.len(), 3, "{combined:#?}");

    // Time range: since is inclusive, until exclusive.
    let middle = &all[all.len() / 2];
    let t = middle["time"].as_str().unwrap();
    let t_enc = t.replace('+', "%2B");
    let since = trail(&cloud, &root, &format!("since={t_enc}")).await;
    let until = trail(&cloud, &root, &format!("until={t_enc}")).await;
    assert!(since.contains(middle) && !until.contains(middle));
    assert_eq!(since.len() + until.len(), all.len());
    let none = Vec::<Value>::new();
    assert_eq!(
        trail(&cloud, &root, "since=2999-01-01T00:00:00Z").await,
        none
    );
    assert_eq!(
        trail(&cloud, &root, "until=2000-01-01T00:00:00Z").await,
        none
    );

    // JSON lines: the same records, one per line; by query or by Accept.
    let text = cloud
        .get(&root, "/v1/audit?format=jsonl")
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, all);
    let resp = cloud
        .req(Method::GET, "/v1/audit?limit=3", Some(&root))
        .header("accept", "application/jsonl")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/jsonl");
    let next = resp.headers()["x-next-marker"].to_str().unwrap().to_owned();
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().count(), 3);
    assert_eq!(next, all[2]["id"].as_str().unwrap());

    // Bad parameters are refused with a clear message.
    for (query, mention) in [
        ("limit=0", "limit must be between 1 and 1000"),
        ("limit=1001", "limit must be between 1 and 1000"),
        ("since=yesterday", "since must be an RFC 3339 time"),
        (
            "until=2026-13-01T00:00:00Z",
            "until must be an RFC 3339 time",
        ),
        ("outcome=ok", "outcome must be success, denied or failure"),
        ("format=xml", "format must be json or jsonl"),
    ] {
        let resp = cloud.get(&root, &format!("/v1/audit?{query}")).await;
        assert_error(query, resp, BAD, mention).await;
    }
    let anonymous = cloud.send(Method::GET, "/v1/audit", None).await;
    assert_error("no token", anonymous, UNAUTHORIZED, "Authorization").await;
}

#[tokio::test]
async fn portal_calls_carry_the_browsers_address() {
    let (cloud, root, _bob) = cloud_with_users().await;
    let form = format!(
        "name=bob&password={}&_csrf=c0ffee",
        WRONG_PASSWORD.replace(' ', "+")
    );
    let resp = cloud
        .http
        .post(format!("{}/login", cloud.base))
        .header("cookie", "nubis_csrf=c0ffee")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert!(!resp.status().is_success(), "{}", resp.status());
    let failed = trail(&cloud, &root, "action=token.create&outcome=denied").await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["user_name"], "bob");
    assert_eq!(failed[0]["source_address"], "127.0.0.1");
    assert_eq!(failed[0]["user_agent"], "nubis-portal");
}

#[tokio::test]
async fn old_records_are_purged_after_the_retention_period() {
    let clock_dir = tempfile::tempdir().unwrap();
    let offset = clock_dir.path().join("offset");
    std::fs::write(&offset, "0").unwrap();
    let cloud = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            clock: nubis_controller::clock::Clock::with_offset_file(offset.clone()),
            audit: nubis_controller::audit::AuditSettings {
                retention_days: 1,
                purge_interval: Duration::ZERO,
            },
            ..Default::default()
        },
    )
    .await;
    let root = cloud.admin("root").await;
    assert!(!trail(&cloud, &root, "").await.is_empty());
    // Two days on, the next sweep of the terms keeper purges them all.
    std::fs::write(&offset, (2 * 86_400).to_string()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = trail(&cloud, &root, "action=user.create").await;
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not purged: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_trail_that_cannot_be_written_fails_no_call() {
    let (cloud, root, bob) = cloud_with_users().await;
    // Break the trail behind the controller's back.
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", cloud.dir.path().join("nubis.db").display());
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE audit_events")
        .execute(&mut db)
        .await
        .unwrap();
    let made = cloud
        .post(Some(&bob), "/v1/keypairs", &json!({"name": "k"}))
        .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let refused = cloud.login("bob", WRONG_PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let keypairs = cloud.get_ok(&bob, "/v1/keypairs").await;
    assert_eq!(keypairs.as_array().unwrap().len(), 1, "{keypairs}");
    // Reading the trail fails, as it must, without taking anything down.
    let read = cloud.get(&root, "/v1/audit").await;
    assert_eq!(read.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        cloud.get(&root, "/v1/users/me").await.status(),
        StatusCode::OK
    );
}
