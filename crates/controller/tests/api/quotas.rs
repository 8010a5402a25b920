//! Project quotas.

use super::*;

const QUOTA_EXCEEDED: Want = (StatusCode::FORBIDDEN, "quota_exceeded");

impl Cloud {
    /// The project of the user holding `token`.
    async fn project_of(&self, token: &str) -> String {
        let me = self.get_ok(token, "/v1/users/me").await;
        me["project"].as_str().expect("a project").to_owned()
    }

    async fn put_quotas(&self, token: &str, project: &str, body: &Value) -> Response {
        self.req(
            Method::PUT,
            &format!("/v1/projects/{project}/quotas"),
            Some(token),
        )
        .json(body)
        .send()
        .await
        .unwrap()
    }

    async fn quotas(&self, token: &str, project: &str) -> Value {
        self.get_ok(token, &format!("/v1/projects/{project}/quotas"))
            .await
    }
}

/// A cloud with an admin (root), a user alice, alice's project id, a host
/// and alice's raw image `disk`: (cloud, admin token, alice token, project).
async fn admin_and_alice_with_a_disk() -> (Cloud, String, String, String) {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = cloud.user("alice").await;
    let ap = cloud.project_of(&alice).await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    (cloud, admin, alice, ap)
}

#[tokio::test]
async fn quotas_are_shown_to_their_project_and_set_by_admins() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let (ap, bp) = (cloud.project_of(&alice).await, cloud.project_of(&bob).await);

    let defaults = json!({"servers": 10, "vcpus": 20, "memory_mib": 51200, "disk_gib": 1000,
        "floating_ips": 10, "networks": 10, "images": 20, "image_gib": 100,
        "security_groups": 10, "security_group_rules": 100, "server_groups": 10});
    let zero = json!({"servers": 0, "vcpus": 0, "memory_mib": 0, "disk_gib": 0,
        "floating_ips": 0, "networks": 0, "images": 0, "image_gib": 0,
        "security_groups": 0, "security_group_rules": 0, "server_groups": 0});
    let before = cloud.quotas(&alice, &ap).await;
    assert_eq!(
        before,
        json!({"project": ap, "limits": defaults, "in_use": zero, "image_bytes_in_use": 0})
    );
    assert_eq!(
        cloud.quotas(&admin, &ap).await,
        before,
        "admins see any project's"
    );

    // Another project's quotas, or no project's, are not found.
    let random = uuid::Uuid::new_v4().to_string();
    for (who, token, project) in [
        ("bob on alice's", &bob, ap.as_str()),
        ("alice on a random id", &alice, random.as_str()),
        ("admin on a random id", &admin, random.as_str()),
        ("alice on a bad id", &alice, "not-a-uuid"),
    ] {
        let resp = cloud
            .get(token, &format!("/v1/projects/{project}/quotas"))
            .await;
        assert_error(who, resp, NOT_FOUND, "not found").await;
    }

    // Only admins set them, on their own project too.
    let body = json!({"servers": 1});
    for (who, token, project) in [
        ("alice on her own", &alice, ap.as_str()),
        ("bob on alice's", &bob, ap.as_str()),
        ("bob on a random id", &bob, random.as_str()),
    ] {
        let resp = cloud.put_quotas(token, project, &body).await;
        assert_error(who, resp, FORBIDDEN, "admin").await;
    }
    assert_eq!(cloud.quotas(&alice, &ap).await, before);
    let resp = cloud.put_quotas(&admin, &random, &body).await;
    assert_error("admin on a random id", resp, NOT_FOUND, "project not found").await;

    // Positive control: an admin sets some limits; the others stay.
    let resp = cloud
        .put_quotas(&admin, &ap, &json!({"servers": 1, "networks": 0}))
        .await;
    let set = ok_json(resp, StatusCode::OK).await;
    assert_eq!(set["limits"]["servers"], 1);
    assert_eq!(set["limits"]["networks"], 0);
    assert_eq!(set["limits"]["vcpus"], 20);
    assert_eq!(cloud.quotas(&alice, &ap).await, set);
    assert_eq!(cloud.quotas(&bob, &bp).await["limits"], defaults);
}

#[tokio::test]
async fn quota_updates_reject_bad_bodies_and_change_nothing() {
    let (cloud, admin, alice, ap) = admin_and_alice_with_a_disk().await;
    for name in ["a", "b"] {
        let body = json!({"name": name, "image": "disk", "flavor": "tiny"});
        let resp = cloud.post(Some(&alice), "/v1/servers", &body).await;
        ok_json(resp, StatusCode::ACCEPTED).await;
    }
    let before = cloud.quotas(&admin, &ap).await;
    assert_eq!(before["in_use"]["servers"], 2);

    let range = "quota limits must be between 0 and 1099511627776";
    #[rustfmt::skip]
    let cases = [
        case("negative", json!({"servers": -1}), INVALID, range),
        case("i64::MIN", json!({"vcpus": i64::MIN}), INVALID, range),
        case("absurd", json!({"disk_gib": 99_999_999_999_999_999u64}), INVALID, range),
        case("2^40 + 1", json!({"memory_mib": (1u64 << 40) + 1}), INVALID, range),
        case("u64::MAX", json!({"networks": u64::MAX}), INVALID, "networks"),
        case("1.5", json!({"servers": 1.5}), INVALID, "servers"),
        // (1e3 and 1000.0 are the integer 1000, as JSON Schema says.)
        case("1e-3", json!({"servers": 1e-3}), INVALID, "servers"),
        case("a string", json!({"servers": "many"}), INVALID, "servers"),
        case("a numeric string", json!({"servers": "3"}), INVALID, "servers"),
        case("null", json!({"servers": null}), INVALID, "servers"),
        case("true", json!({"floating_ips": true}), INVALID, "floating_ips"),
        case("unknown field", json!({"cpus": 2}), INVALID, "unknown field `cpus`"),
        case("good beside unknown", json!({"servers": 5, "ram": 1}), INVALID, "ram"),
        case("good beside bad", json!({"servers": 5, "vcpus": -2}), INVALID, range),
        case("an array", json!([{"servers": 5}]), INVALID, "invalid type"),
        case("below usage", json!({"servers": 1}), CONFLICT,
            "cannot set the servers quota to 1: the project already holds 2"),
        case("below usage beside good", json!({"vcpus": 100, "servers": 0}), CONFLICT, "servers"),
        case("vcpus below usage", json!({"vcpus": 1}), CONFLICT, "vcpus"),
    ];
    for c in &cases {
        let resp = cloud.put_quotas(&admin, &ap, &c.body).await;
        assert_error(&c.what, resp, c.want, c.mention).await;
        assert_eq!(
            cloud.quotas(&admin, &ap).await,
            before,
            "{}: changed",
            c.what
        );
    }
    // Malformed JSON and missing content types.
    let path = format!("/v1/projects/{ap}/quotas");
    let resp = cloud
        .req(Method::PUT, &path, Some(&admin))
        .header(CONTENT_TYPE, "application/json")
        .body("{\"servers\": ")
        .send()
        .await
        .unwrap();
    assert_error("malformed", resp, BAD, "malformed JSON").await;
    let resp = cloud
        .req(Method::PUT, &path, Some(&admin))
        .body("{\"servers\": 5}")
        .send()
        .await
        .unwrap();
    assert_error("no content type", resp, UNSUPPORTED, "Content-Type").await;
    assert_eq!(cloud.quotas(&admin, &ap).await, before);

    // Positive control: exactly the usage, and the largest limit, are fine.
    let resp = cloud
        .put_quotas(&admin, &ap, &json!({"servers": 2, "disk_gib": 1u64 << 40}))
        .await;
    let q = ok_json(resp, StatusCode::OK).await;
    assert_eq!(q["limits"]["servers"], 2);
    assert_eq!(q["limits"]["disk_gib"], 1u64 << 40);
}

#[tokio::test]
async fn creates_beyond_the_quota_are_403_and_create_nothing() {
    let (cloud, admin, alice, ap) = admin_and_alice_with_a_disk().await;
    let pool = json!({"name": "public", "first": "203.0.113.1", "last": "203.0.113.50"});
    let resp = cloud
        .post(Some(&admin), "/v1/floating-ip-pools", &pool)
        .await;
    ok_json(resp, StatusCode::CREATED).await;
    let limits = json!({"servers": 1, "vcpus": 2, "floating_ips": 1, "networks": 1});
    ok_json(cloud.put_quotas(&admin, &ap, &limits).await, StatusCode::OK).await;

    let server = |name: &str, vcpus: u64| json!({"name": name, "image": "disk", "vcpus": vcpus, "memory_mib": 128, "disk_gib": 1});
    let before = cloud.snapshot(&alice).await;
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &server("big", 3))
        .await;
    let message = assert_error("3 vCPUs of 2", resp, QUOTA_EXCEEDED, "vcpus").await;
    assert_eq!(
        message,
        "quota exceeded for vcpus: limit 2, in use 0, requested 3"
    );
    assert_eq!(cloud.snapshot(&alice).await, before);
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &server("web", 2))
        .await;
    ok_json(resp, StatusCode::ACCEPTED).await;
    let before = cloud.snapshot(&alice).await;
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &server("two", 1))
        .await;
    assert_error(
        "a second server",
        resp,
        QUOTA_EXCEEDED,
        "quota exceeded for servers: limit 1, in use 1, requested 1",
    )
    .await;

    // Networks: the default one (made by listing) does not count.
    let net = |name: &str, cidr: &str| json!({"name": name, "cidr": cidr});
    let resp = cloud
        .post(Some(&alice), "/v1/networks", &net("lan", "10.81.1.0/24"))
        .await;
    ok_json(resp, StatusCode::CREATED).await;
    let before_nets = cloud.get_ok(&alice, "/v1/networks").await;
    assert_eq!(before_nets.as_array().unwrap().len(), 2, "default and lan");
    let resp = cloud
        .post(Some(&alice), "/v1/networks", &net("lan2", "10.81.2.0/24"))
        .await;
    assert_error("a second network", resp, QUOTA_EXCEEDED, "networks").await;
    assert_eq!(cloud.get_ok(&alice, "/v1/networks").await, before_nets);

    // Floating IPs.
    let resp = cloud
        .post(Some(&alice), "/v1/floating-ips", &json!({}))
        .await;
    ok_json(resp, StatusCode::CREATED).await;
    let fips = cloud.get_ok(&alice, "/v1/floating-ips").await;
    let resp = cloud
        .post(Some(&alice), "/v1/floating-ips", &json!({}))
        .await;
    assert_error("a second floating IP", resp, QUOTA_EXCEEDED, "floating_ips").await;
    assert_eq!(cloud.get_ok(&alice, "/v1/floating-ips").await, fips);

    let q = cloud.quotas(&alice, &ap).await;
    assert_eq!(
        q["in_use"],
        json!({"servers": 1, "vcpus": 2, "memory_mib": 128, "disk_gib": 1,
            "floating_ips": 1, "networks": 1, "images": 1, "image_gib": 1,
            "security_groups": 0, "security_group_rules": 4, "server_groups": 0})
    );
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, before[0]);
}

#[tokio::test]
async fn concurrent_http_creates_never_exceed_the_quota() {
    let (cloud, admin, alice, ap) = admin_and_alice_with_a_disk().await;
    // Make the default network first, so the race is only about servers.
    cloud.get_ok(&alice, "/v1/networks").await;
    ok_json(
        cloud.put_quotas(&admin, &ap, &json!({"servers": 3})).await,
        StatusCode::OK,
    )
    .await;
    let bodies: Vec<Value> = (0..12)
        .map(|i| {
            json!({"name": format!("s{i}"), "image": "disk", "vcpus": 1, "memory_mib": 64,
                "disk_gib": 1})
        })
        .collect();
    let responses = futures_util::future::join_all(
        bodies
            .iter()
            .map(|b| cloud.post(Some(&alice), "/v1/servers", b)),
    )
    .await;
    let mut created = 0;
    for (body, resp) in bodies.iter().zip(responses) {
        if resp.status() == StatusCode::ACCEPTED {
            created += 1;
        } else {
            let what = format!("creating {}", body["name"]);
            assert_error(&what, resp, QUOTA_EXCEEDED, "quota exceeded for servers").await;
        }
    }
    assert_eq!(created, 3);
    let servers = cloud.get_ok(&alice, "/v1/servers").await;
    assert_eq!(servers.as_array().unwrap().len(), 3);
    assert_eq!(cloud.quotas(&alice, &ap).await["in_use"]["servers"], 3);
}
