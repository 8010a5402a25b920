//! Creating servers: bad input creates nothing.

use super::*;

#[tokio::test]
async fn server_create_rejects_bad_input_and_creates_nothing() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    // Room in the quota for sizes no host holds: the quota is checked
    // first (as Nova does), then placement.
    let admin = cloud.admin("root").await;
    let project = cloud.get_ok(&alice, "/v1/users/me").await["project"].clone();
    let resp = cloud
        .req(
            Method::PUT,
            &format!("/v1/projects/{}/quotas", project.as_str().unwrap()),
            Some(&admin),
        )
        .json(&json!({"vcpus": 1000, "memory_mib": 1_000_000, "disk_gib": 100_000}))
        .send()
        .await
        .unwrap();
    ok_json(resp, StatusCode::OK).await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; MIB])
        .await;
    cloud
        .active_image(&alice, "big", "qcow2", qcow2(2 * GIB, None))
        .await;
    cloud
        .active_image(&alice, "kernel", "aki", b"kernel".to_vec())
        .await;
    cloud
        .active_image(&alice, "ramdisk", "ari", b"ramdisk".to_vec())
        .await;
    cloud
        .create_image(&alice, image_record("queued", "raw"))
        .await;
    let bobs = cloud
        .active_image(&bob, "bobdisk", "raw", vec![0; 4096])
        .await;
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, json!([]));

    let valid =
        json!({"name": "web", "image": "disk", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let by_flavor = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let f = |k: &str, x: Value| with(&by_flavor, k, x);
    let vcpus = "vcpus must be between 1 and 64";
    let memory = "memory_mib must be between 64 and 262144 MiB";
    let disk = "disk_gib must be between 1 and 16384 GiB";
    let both = "give either a flavor or vcpus/memory_mib/disk_gib, not both";
    let all = "vcpus, memory_mib and disk_gib must all be given (or a flavor)";
    let smaller = "disk_gib 1 is smaller than the image";
    let room = "no host has room for";
    let mut disk_null = valid.clone();
    disk_null["disk_gib"] = Value::Null;
    let zeros = with(&v("vcpus", json!(0)), "memory_mib", json!(0));
    let only_vcpus = json!({"name": "web", "image": "disk", "vcpus": 1});
    #[rustfmt::skip]
    let mut cases = vec![
        case("vcpus 0", v("vcpus", json!(0)), INVALID, vcpus),
        case("vcpus -1", v("vcpus", json!(-1)), INVALID, vcpus),
        case("vcpus 65", v("vcpus", json!(65)), INVALID, vcpus),
        case("vcpus 10^9", v("vcpus", json!(1_000_000_000)), INVALID, vcpus),
        case("vcpus i64::MIN", v("vcpus", json!(i64::MIN)), INVALID, vcpus),
        case("vcpus 1e9", v("vcpus", json!(1e9)), INVALID, "vcpus"),
        case("vcpus 1.5", v("vcpus", json!(1.5)), INVALID, "vcpus"),
        case("vcpus u64::MAX", v("vcpus", json!(u64::MAX)), INVALID, "vcpus"),
        case("vcpus \"1\"", v("vcpus", json!("1")), INVALID, "vcpus"),
        case("vcpus true", v("vcpus", json!(true)), INVALID, "vcpus"),
        case("vcpus {}", v("vcpus", json!({})), INVALID, "vcpus"),
        case("memory 0", v("memory_mib", json!(0)), INVALID, memory),
        case("memory 63", v("memory_mib", json!(63)), INVALID, memory),
        case("memory -1", v("memory_mib", json!(-1)), INVALID, memory),
        case("memory 262145", v("memory_mib", json!(262_145)), INVALID, memory),
        case("memory 2^60", v("memory_mib", json!(1u64 << 60)), INVALID, memory),
        case("memory \"lots\"", v("memory_mib", json!("lots")), INVALID, "memory_mib"),
        // (128.0 is the integer 128, as JSON Schema says.)
        case("memory 128.5", v("memory_mib", json!(128.5)), INVALID, "memory_mib"),
        case("disk 0", v("disk_gib", json!(0)), INVALID, disk),
        case("disk -5", v("disk_gib", json!(-5)), INVALID, disk),
        case("disk 16385", v("disk_gib", json!(16_385)), INVALID, disk),
        case("disk 2^40", v("disk_gib", json!(1u64 << 40)), INVALID, disk),
        case("disk \"1G\"", v("disk_gib", json!("1G")), INVALID, "disk_gib"),
        case("vcpus and memory 0", zeros, INVALID, "must be between"),
        case("flavor and sizes", v("flavor", json!("tiny")), BAD, both),
        case("flavor and vcpus", f("vcpus", json!(1)), BAD, both),
        case("flavor and disk", f("disk_gib", json!(5)), BAD, both),
        case("only vcpus", only_vcpus, BAD, all),
        case("no disk_gib", v("disk_gib", Value::Null), BAD, all),
        case("disk_gib null", disk_null, BAD, all),
        case("no memory_mib", v("memory_mib", Value::Null), BAD, all),
        case("no size at all", f("flavor", Value::Null), BAD, "a flavor or vcpus"),
        case("unknown flavor", f("flavor", json!("huge")), BAD, "flavor 'huge' not found"),
        case("empty flavor", f("flavor", json!("")), BAD, "flavor '' not found"),
        case("flavor 7", f("flavor", json!(7)), INVALID, "flavor"),
        case("unknown image", v("image", json!("nope")), BAD, "image 'nope' not found"),
        case("random image id", v("image", json!(uuid::Uuid::new_v4())), BAD, "not found"),
        case("bob's image", v("image", json!("bobdisk")), BAD, "image 'bobdisk' not found"),
        case("bob's image id", v("image", bobs["id"].clone()), BAD, "not found"),
        case("no image", v("image", Value::Null), INVALID, "missing field `image`"),
        case("image 1", v("image", json!(1)), INVALID, "image"),
        case("queued image", v("image", json!("queued")), BAD, "has no file yet; upload it first"),
        case("aki image", v("image", json!("kernel")), BAD, "is a aki image, not a disk image"),
        case("ari image", v("image", json!("ramdisk")), BAD, "is a ari image, not a disk image"),
        case("disk < image", v("image", json!("big")), BAD, smaller),
        case("flavor disk < image", f("image", json!("big")), BAD, smaller),
        case("unknown field", v("host", json!("h1")), INVALID, "unknown field `host`"),
        // Well-formed sizes that no host can hold.
        case("64 vcpus", v("vcpus", json!(64)), NO_CAPACITY, room),
        case("256 GiB memory", v("memory_mib", json!(262_144)), NO_CAPACITY, room),
        case("16 TiB disk", v("disk_gib", json!(16_384)), NO_CAPACITY, room),
        case("large flavor", f("flavor", json!("large")), NO_CAPACITY, room),
    ];
    cases.extend(bad_name_cases(&valid, "name"));
    cloud.refuse_all(&alice, "/v1/servers", &cases).await;

    // Bodies that are not JSON, not declared as JSON, or too big.
    let json_ct = Some("application/json");
    let text = valid.to_string();
    let huge = v("image", json!("x".repeat(MIB + 1))).to_string();
    #[rustfmt::skip]
    let raw: [(&str, Option<&str>, String, Want, &str); 4] = [
        ("malformed", json_ct, r#"{"name":"web","#.into(), BAD, "malformed JSON"),
        ("text/plain", Some("text/plain"), text.clone(), UNSUPPORTED, "application/json"),
        ("no content type", None, text, UNSUPPORTED, "application/json"),
        ("over 1 MiB", json_ct, huge, TOO_LARGE, "too large"),
    ];
    for (what, ct, body, want, why) in raw {
        let resp = cloud.post_raw(Some(&alice), "/v1/servers", ct, body).await;
        assert_error(what, resp, want, why).await;
    }
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, json!([]));
    assert_eq!(cloud.get_ok(&bob, "/v1/servers").await, json!([]));

    // Positive controls: the valid body is accepted; a disk exactly the
    // image's virtual size is fine; so is a 63-character name.
    let resp = cloud.post(Some(&alice), "/v1/servers", &valid).await;
    let web = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(web["status"], "building", "{web}");
    let exact = with(&v("image", json!("big")), "disk_gib", json!(2));
    let exact = with(&exact, "name", json!("big"));
    let long = v("name", json!("n".repeat(63)));
    for body in [exact, long] {
        let resp = cloud.post(Some(&alice), "/v1/servers", &body).await;
        ok_json(resp, StatusCode::ACCEPTED).await;
    }
    let listed = cloud.get_ok(&alice, "/v1/servers").await;
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // Names are unique per project: a second "web" is a 409 and changes
    // nothing, but another project may use the name.
    let exists = "a server named 'web' already exists in this project";
    let duplicates = [
        case("duplicate name", valid.clone(), CONFLICT, exists),
        case(
            "duplicate name, by flavor",
            by_flavor.clone(),
            CONFLICT,
            exists,
        ),
    ];
    cloud.refuse_all(&alice, "/v1/servers", &duplicates).await;
    let bobs_web = v("image", json!("bobdisk"));
    let resp = cloud.post(Some(&bob), "/v1/servers", &bobs_web).await;
    let created = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(created["name"], "web");
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, listed);
    assert_eq!(cloud.get_ok(&bob, "/v1/servers").await, json!([created]));
}

#[tokio::test]
async fn server_create_without_hosts_is_503_and_creates_nothing() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let body = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let cases = [case(
        "no hosts",
        body,
        NO_HOSTS,
        "no host is up to run servers",
    )];
    cloud.refuse_all(&alice, "/v1/servers", &cases).await;
}

#[tokio::test]
async fn server_names_with_one_dns_label_are_duplicates() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    cloud
        .active_image(&bob, "bobdisk", "raw", vec![0; 4096])
        .await;
    let body = |name: &str| json!({"name": name, "image": "disk", "flavor": "tiny"});
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &body("my-server"))
        .await;
    let first = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(
        first["dns_name"]
            .as_str()
            .map(|n| n.starts_with("my-server.alice.")),
        Some(true),
        "{first}"
    );
    let listed = cloud.get_ok(&alice, "/v1/servers").await;

    // Each of these would also be `my-server.alice.<zone>`: refused, naming
    // the server that has the label, and nothing is created.
    let taken = "gives the DNS name 'my-server', which server 'my-server'";
    let cases: Vec<_> = ["my server", "My-Server", "my_server", "-my.server-"]
        .into_iter()
        .map(|name| case(name, body(name), CONFLICT, taken))
        .collect();
    cloud.refuse_all(&alice, "/v1/servers", &cases).await;
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, listed);
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &body("my server"))
        .await;
    let msg = assert_error("message", resp, CONFLICT, taken).await;
    let id = first["id"].as_str().unwrap();
    assert!(msg.contains("'my server'") && msg.contains(id), "{msg}");

    // Positive controls: a name with another label is accepted, and so is
    // the same name in another project.
    let resp = cloud
        .post(Some(&alice), "/v1/servers", &body("my-server-2"))
        .await;
    ok_json(resp, StatusCode::ACCEPTED).await;
    let bobs = json!({"name": "my server", "image": "bobdisk", "flavor": "tiny"});
    let resp = cloud.post(Some(&bob), "/v1/servers", &bobs).await;
    ok_json(resp, StatusCode::ACCEPTED).await;
}
