//! `GET /v1/servers` a page at a time: `limit`, `marker`, `X-Next-Marker`.

use super::*;

/// The page at `path`: its server ids and the next page's marker.
async fn page(cloud: &Cloud, token: &str, path: &str) -> (Vec<String>, Option<String>) {
    let resp = cloud.get(token, path).await;
    let next = resp
        .headers()
        .get("x-next-marker")
        .map(|m| m.to_str().unwrap().to_owned());
    let body = ok_json(resp, StatusCode::OK).await;
    let ids = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| id(s).to_owned())
        .collect();
    (ids, next)
}

/// Creates `n` servers named `<prefix>0`... for `token`; returns their ids
/// in creation order.
async fn servers(cloud: &Cloud, token: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body = json!({"name": format!("{prefix}{i}"), "image": "disk",
            "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
        let created = ok_json(
            cloud.post(Some(token), "/v1/servers", &body).await,
            StatusCode::ACCEPTED,
        )
        .await;
        ids.push(id(&created).to_owned());
    }
    ids
}

#[tokio::test]
async fn server_list_pages_follow_the_marker_in_creation_order() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; MIB])
        .await;
    let mut created = servers(&cloud, &alice, "s", 5).await;

    // No limit: everything (the default page is 1000), no marker. Oldest
    // first (servers made in the same millisecond by id).
    let (all, next) = page(&cloud, &alice, "/v1/servers").await;
    assert_eq!(next, None);
    let mut sorted = all.clone();
    sorted.sort();
    created.sort();
    assert_eq!(sorted, created);
    let created = all;

    // Pages of two: 2 + 2 + 1, each marker the last id of its page.
    let (first, next) = page(&cloud, &alice, "/v1/servers?limit=2").await;
    assert_eq!(first, created[..2]);
    assert_eq!(next.as_deref(), Some(created[1].as_str()));
    let (second, next) = page(
        &cloud,
        &alice,
        &format!("/v1/servers?limit=2&marker={}", next.unwrap()),
    )
    .await;
    assert_eq!(second, created[2..4]);
    let (third, next) = page(
        &cloud,
        &alice,
        &format!("/v1/servers?limit=2&marker={}", next.unwrap()),
    )
    .await;
    assert_eq!(third, created[4..]);
    assert_eq!(next, None, "the last page has no marker");

    // An exact fit: a full last page, then an empty one is not announced.
    let (all5, next) = page(&cloud, &alice, "/v1/servers?limit=5").await;
    assert_eq!(all5, created);
    assert_eq!(next, None);
    // After the last server: an empty page. The largest limit is accepted.
    let (empty, next) = page(
        &cloud,
        &alice,
        &format!("/v1/servers?limit=1000&marker={}", created[4]),
    )
    .await;
    assert!(empty.is_empty());
    assert_eq!(next, None);
    // An empty marker is no marker.
    let (all_again, _) = page(&cloud, &alice, "/v1/servers?marker=").await;
    assert_eq!(all_again, created);
}

#[tokio::test]
async fn server_list_refuses_bad_limits_and_markers() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let admin = cloud.admin("root").await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; MIB])
        .await;
    cloud.active_image(&bob, "disk", "raw", vec![0; MIB]).await;
    let alices = servers(&cloud, &alice, "a", 2).await;
    let bobs = servers(&cloud, &bob, "b", 2).await;
    let before = cloud.get_ok(&alice, "/v1/servers").await;

    let limit = "limit must be between 1 and 1000";
    let made_up = nubis_api::ServerId::new().to_string();
    for (path, mention) in [
        ("/v1/servers?limit=0".to_owned(), limit.to_owned()),
        ("/v1/servers?limit=1001".to_owned(), limit.to_owned()),
        ("/v1/servers?limit=-1".to_owned(), "limit".to_owned()),
        ("/v1/servers?limit=many".to_owned(), "limit".to_owned()),
        (
            "/v1/servers?marker=not-an-id".to_owned(),
            "marker must be a server id".to_owned(),
        ),
        (
            format!("/v1/servers?marker={made_up}"),
            format!("marker {made_up} not found"),
        ),
        // Another project's server is as unknown as a made-up id.
        (
            format!("/v1/servers?marker={}", bobs[0]),
            format!("marker {} not found", bobs[0]),
        ),
    ] {
        assert_error(&path, cloud.get(&alice, &path).await, BAD, &mention).await;
    }
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, before);

    // Positive controls: alice's own marker works for her; an admin listing
    // every project accepts any project's marker.
    let (mine, _) = page(&cloud, &alice, "/v1/servers").await;
    assert_eq!(mine.len(), alices.len());
    let (rest, _) = page(&cloud, &alice, &format!("/v1/servers?marker={}", mine[0])).await;
    assert_eq!(rest, mine[1..]);
    let (everyone, _) = page(&cloud, &admin, "/v1/servers?all_projects=true").await;
    assert_eq!(everyone.len(), 4);
    let at = everyone.iter().position(|s| *s == bobs[0]).unwrap();
    let (after_bob, _) = page(
        &cloud,
        &admin,
        &format!("/v1/servers?all_projects=true&marker={}", bobs[0]),
    )
    .await;
    assert_eq!(after_bob, everyone[at + 1..]);
    // Without all_projects the admin's own (empty) project is the scope.
    let path = format!("/v1/servers?marker={}", bobs[0]);
    assert_error(&path, cloud.get(&admin, &path).await, BAD, "not found").await;
}
