//! Nothing grows without bound: image and security-group quotas, and image
//! deletion (refused while used; the file goes with the image).

use super::*;

const QUOTA_EXCEEDED: Want = (StatusCode::FORBIDDEN, "quota_exceeded");
const IN_USE: Want = (StatusCode::CONFLICT, "in_use");

impl Cloud {
    async fn project_id(&self, token: &str) -> String {
        let me = self.get_ok(token, "/v1/users/me").await;
        me["project"].as_str().expect("a project").to_owned()
    }

    async fn set_quotas(&self, admin: &str, project: &str, body: Value) -> Value {
        let resp = self
            .req(
                Method::PUT,
                &format!("/v1/projects/{project}/quotas"),
                Some(admin),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        ok_json(resp, StatusCode::OK).await
    }

    async fn delete_image(&self, token: &str, image: &str) -> Response {
        self.send(Method::DELETE, &format!("/v1/images/{image}"), Some(token))
            .await
    }

    /// The host reports holding nothing: servers being deleted go.
    async fn report_empty(&self, host: &str) {
        let resp = self
            .agent_req(Method::PUT, &format!("/v1/agent/hosts/{host}/report"))
            .json(&json!({"instances": []}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "report: {}", resp.status());
    }

    /// `GET /v1/agent/images`: the ids agents may keep.
    async fn agent_catalog(&self) -> Vec<String> {
        let resp = self
            .agent_req(Method::GET, "/v1/agent/images")
            .send()
            .await
            .unwrap();
        serde_json::from_value(ok_json(resp, StatusCode::OK).await).unwrap()
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn image_quotas_limit_the_count_and_the_bytes() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = cloud.user("alice").await;
    let ap = cloud.project_id(&alice).await;

    // Defaults are shown beside the other limits.
    let q = cloud
        .get_ok(&alice, &format!("/v1/projects/{ap}/quotas"))
        .await;
    assert_eq!(q["limits"]["images"], 20);
    assert_eq!(q["limits"]["image_gib"], 100);
    assert_eq!(q["in_use"]["images"], 0);
    assert_eq!(q["image_bytes_in_use"], 0);

    cloud
        .set_quotas(&admin, &ap, json!({"images": 2, "image_gib": 1}))
        .await;
    // Positive control: two images fit, one with its file.
    cloud
        .active_image(&alice, "one", "raw", vec![7; 4096])
        .await;
    let queued = cloud.create_image(&alice, image_record("two", "raw")).await;
    let before = cloud.get_ok(&alice, "/v1/images").await;
    let resp = cloud
        .post(Some(&alice), "/v1/images", &image_record("three", "raw"))
        .await;
    let m = assert_error("a third image", resp, QUOTA_EXCEEDED, "images").await;
    assert_eq!(
        m,
        "quota exceeded for images: limit 2, in use 2, requested 1"
    );
    assert_eq!(cloud.get_ok(&alice, "/v1/images").await, before);

    let q = cloud
        .get_ok(&alice, &format!("/v1/projects/{ap}/quotas"))
        .await;
    assert_eq!(q["in_use"]["images"], 2);
    assert_eq!(q["in_use"]["image_gib"], 1, "4 KiB, rounded up");
    assert_eq!(q["image_bytes_in_use"], 4096);

    // No room for bytes: the upload is refused by what arrives (a stream
    // without Content-Length), and the image stays queued with no file.
    let resp = cloud
        .req(
            Method::PUT,
            &format!("/v1/projects/{ap}/quotas"),
            Some(&admin),
        )
        .json(&json!({"image_gib": 0}))
        .send()
        .await
        .unwrap();
    assert_error(
        "image_gib below the bytes held",
        resp,
        (StatusCode::CONFLICT, "conflict"),
        "image_gib",
    )
    .await;
    // Free the 4 KiB, then allow no bytes at all.
    let one = cloud.image(&alice, "one").await;
    let resp = cloud.delete_image(&alice, id(&one)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    cloud.set_quotas(&admin, &ap, json!({"image_gib": 0})).await;
    let chunks =
        futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![1u8; 64 * 1024])));
    let resp = cloud
        .req(
            Method::PUT,
            &format!("/v1/images/{}/file", id(&queued)),
            Some(&alice),
        )
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_error("bytes beyond image_gib", resp, QUOTA_EXCEEDED, "image_gib").await;
    assert_eq!(cloud.image(&alice, id(&queued)).await["status"], "queued");
    let leftovers: Vec<_> = std::fs::read_dir(cloud.images_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "files left: {leftovers:?}");
    // With a declared length, refused before any byte is stored.
    let resp = cloud.upload(&alice, id(&queued), vec![1; 4096]).await;
    assert_error(
        "declared beyond image_gib",
        resp,
        QUOTA_EXCEEDED,
        "image_gib",
    )
    .await;

    // Positive control: with room again, the same upload is accepted.
    cloud.set_quotas(&admin, &ap, json!({"image_gib": 1})).await;
    let resp = cloud.upload(&alice, id(&queued), vec![1; 4096]).await;
    assert_eq!(ok_json(resp, StatusCode::OK).await["status"], "active");
}

#[tokio::test]
async fn security_group_and_rule_quotas() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = cloud.user("alice").await;
    let ap = cloud.project_id(&alice).await;
    // Listing makes the `default` group (4 rules), which the groups quota
    // leaves out.
    cloud.get_ok(&alice, "/v1/security-groups").await;
    let q = cloud
        .get_ok(&alice, &format!("/v1/projects/{ap}/quotas"))
        .await;
    assert_eq!(q["limits"]["security_groups"], 10);
    assert_eq!(q["limits"]["security_group_rules"], 100);
    assert_eq!(q["in_use"]["security_groups"], 0);
    assert_eq!(q["in_use"]["security_group_rules"], 4);

    cloud
        .set_quotas(
            &admin,
            &ap,
            json!({"security_groups": 1, "security_group_rules": 5}),
        )
        .await;
    let group = |name: &str| json!({"name": name});
    let resp = cloud
        .post(Some(&alice), "/v1/security-groups", &group("web"))
        .await;
    let web = ok_json(resp, StatusCode::CREATED).await;
    let rules = format!("/v1/security-groups/{}/rules", id(&web));
    let before = cloud.get_ok(&alice, "/v1/security-groups").await;
    let resp = cloud
        .post(Some(&alice), "/v1/security-groups", &group("db"))
        .await;
    let m = assert_error("a second group", resp, QUOTA_EXCEEDED, "security_groups").await;
    assert_eq!(
        m,
        "quota exceeded for security_groups: limit 1, in use 1, requested 1"
    );
    assert_eq!(cloud.get_ok(&alice, "/v1/security-groups").await, before);

    let rule = |port: u16| json!({"direction": "ingress", "protocol": "tcp", "port_min": port, "port_max": port});
    let resp = cloud.post(Some(&alice), &rules, &rule(80)).await;
    ok_json(resp, StatusCode::CREATED).await;
    let before = cloud.get_ok(&alice, "/v1/security-groups").await;
    let resp = cloud.post(Some(&alice), &rules, &rule(443)).await;
    assert_error("a sixth rule", resp, QUOTA_EXCEEDED, "security_group_rules").await;
    assert_eq!(cloud.get_ok(&alice, "/v1/security-groups").await, before);

    // Positive control: a higher limit lets the same rule in.
    cloud
        .set_quotas(&admin, &ap, json!({"security_group_rules": 6}))
        .await;
    let resp = cloud.post(Some(&alice), &rules, &rule(443)).await;
    ok_json(resp, StatusCode::CREATED).await;
    // Another project is not limited by alice's quota.
    let bob = cloud.user("bob").await;
    for name in ["web", "db"] {
        let resp = cloud
            .post(Some(&bob), "/v1/security-groups", &group(name))
            .await;
        ok_json(resp, StatusCode::CREATED).await;
    }
}

#[tokio::test]
async fn images_in_use_cannot_be_deleted_and_deleted_ones_free_their_file() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let host = cloud.register_host().await;
    let host = id(&host).to_owned();
    let disk = cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let disk_id = id(&disk).to_owned();
    let file = cloud.images_dir().join(&disk_id);
    assert!(file.exists(), "the upload is on disk");
    assert!(cloud.agent_catalog().await.contains(&disk_id));

    // A kernel used by another image, and an image used by a server.
    let kernel = cloud
        .active_image(&alice, "vmlinuz", "aki", vec![9; 512])
        .await;
    let booted = with(&image_record("booted", "raw"), "kernel", json!("vmlinuz"));
    cloud.create_image(&alice, booted).await;
    let body = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let server = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;

    // Another project's private image is not found, by id or by name.
    for (who, token, image) in [
        ("bob by id", &bob, disk_id.as_str()),
        ("bob by name", &bob, "disk"),
        ("alice, no such image", &alice, "nothing"),
    ] {
        let resp = cloud.delete_image(token, image).await;
        assert_error(who, resp, NOT_FOUND, "image not found").await;
    }
    let resp = cloud.delete_image(&alice, "disk").await;
    let m = assert_error("used by a server", resp, IN_USE, "server").await;
    assert_eq!(m, "1 server(s) still use this image; delete them first");
    let resp = cloud.delete_image(&alice, id(&kernel)).await;
    assert_error("a kernel of an image", resp, IN_USE, "booted").await;
    assert!(file.exists(), "a refused delete keeps the file");
    assert_eq!(
        names(&cloud.get_ok(&alice, "/v1/images").await),
        ["disk", "vmlinuz", "booted"]
    );

    // A server being deleted still holds it; once its host no longer
    // reports it, the image can go.
    let resp = cloud
        .send(
            Method::DELETE,
            &format!("/v1/servers/{}", id(&server)),
            Some(&alice),
        )
        .await;
    assert!(
        resp.status().is_success(),
        "server delete: {}",
        resp.status()
    );
    let resp = cloud.delete_image(&alice, "disk").await;
    assert_error("used by a server being deleted", resp, IN_USE, "server").await;
    cloud.report_empty(&host).await;
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, json!([]));

    let resp = cloud.delete_image(&alice, "disk").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(
        !file.exists(),
        "the file is removed from {}",
        file.display()
    );
    let resp = cloud.get(&alice, &format!("/v1/images/{disk_id}")).await;
    assert_error("deleted image", resp, NOT_FOUND, "image not found").await;
    assert_eq!(
        names(&cloud.get_ok(&alice, "/v1/images").await),
        ["vmlinuz", "booted"]
    );
    assert!(!cloud.agent_catalog().await.contains(&disk_id));
    let resp = cloud.delete_image(&alice, &disk_id).await;
    assert_error("deleted twice", resp, NOT_FOUND, "image not found").await;

    // The image that booted with the kernel goes first (queued: no file),
    // then the kernel; an admin may delete any project's image by id.
    let resp = cloud.delete_image(&alice, "booted").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = cloud.delete_image(&admin, id(&kernel)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(cloud.get_ok(&alice, "/v1/images").await, json!([]));
    let q = cloud.get_ok(&alice, "/v1/projects/current/quotas").await;
    assert_eq!(q["in_use"]["images"], 0);
    assert_eq!(q["image_bytes_in_use"], 0);

    // A public image: others see it but may not delete it.
    let public = with(
        &image_record("shared", "raw"),
        "visibility",
        json!("public"),
    );
    let shared = cloud.create_image(&admin, public).await;
    let resp = cloud.delete_image(&alice, "shared").await;
    assert_error("another project's public image", resp, FORBIDDEN, "admin").await;
    let resp = cloud.delete_image(&admin, id(&shared)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}
