//! Images: records, uploads (wrong bytes, too large, concurrent, abandoned)
//! and qcow2 checks.

use super::*;

#[tokio::test]
async fn image_records_are_validated() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let disk = cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let kernel = cloud
        .active_image(&alice, "kernel", "aki", b"kernel".to_vec())
        .await;
    cloud
        .active_image(&alice, "ramdisk", "ari", b"ramdisk".to_vec())
        .await;
    cloud
        .create_image(&alice, image_record("queued-kernel", "aki"))
        .await;
    let bob_kernel = cloud
        .active_image(&bob, "bobkernel", "aki", b"k".to_vec())
        .await;

    let valid = image_record("new", "raw");
    let v = |k: &str, x: Value| with(&valid, k, x);
    let mut cases = Vec::new();
    for field in ["name", "os", "version"] {
        cases.extend(bad_name_cases(&valid, field));
    }
    let variant = "unknown variant";
    let aki = "must be an active aki image";
    let on_disk = "kernel, initrd and cmdline belong on a qcow2 or raw image";
    let aki_with = |k: &str, x: Value| with(&image_record("k2", "aki"), k, x);
    let ari_with = |k: &str, x: Value| with(&image_record("r2", "ari"), k, x);
    let initrd_aki = with(&v("kernel", json!("kernel")), "initrd", json!("kernel"));
    #[rustfmt::skip]
    let more = [
        case("format vmdk", v("format", json!("vmdk")), INVALID, variant),
        case("format vdi", v("format", json!("vdi")), INVALID, variant),
        case("format QCOW2", v("format", json!("QCOW2")), INVALID, variant),
        case("format empty", v("format", json!("")), INVALID, variant),
        // serde_json calls a number where an enum belongs a syntax error.
        case("format 1", v("format", json!(1)), BAD, "format"),
        case("no format", v("format", Value::Null), INVALID, "missing field `format`"),
        case("visibility shared", v("visibility", json!("shared")), INVALID, variant),
        case("unknown field", v("size", json!(5)), INVALID, "unknown field `size`"),
        case("kernel missing", v("kernel", json!("nope")), BAD, "kernel image 'nope' not found"),
        case("kernel random id", v("kernel", json!(uuid::Uuid::new_v4())), BAD, "not found"),
        case("kernel empty", v("kernel", json!("")), BAD, "kernel image '' not found"),
        case("kernel is raw", v("kernel", json!("disk")), BAD, aki),
        case("kernel is ari", v("kernel", json!("ramdisk")), BAD, aki),
        case("kernel queued", v("kernel", json!("queued-kernel")), BAD, aki),
        case("bob's kernel", v("kernel", json!("bobkernel")), BAD, "not found"),
        case("bob's kernel id", v("kernel", bob_kernel["id"].clone()), BAD, "not found"),
        case("kernel 1", v("kernel", json!(1)), INVALID, "kernel"),
        case("initrd is aki", initrd_aki, BAD, "must be an active ari image"),
        case("initrd alone", v("initrd", json!("ramdisk")), BAD, "an initrd needs a kernel"),
        case("kernel on aki", aki_with("kernel", kernel["id"].clone()), BAD, on_disk),
        case("cmdline on aki", aki_with("cmdline", json!("quiet")), BAD, on_disk),
        case("kernel on ari", ari_with("kernel", json!("kernel")), BAD, on_disk),
        case("cmdline newline", v("cmdline", json!("console=ttyS0\ninit=/bin/sh")), BAD, "cmdline"),
        case("cmdline bell", v("cmdline", json!("quiet\u{7}")), BAD, "without control characters"),
        case("cmdline 2049", v("cmdline", json!("x".repeat(2049))), BAD, "at most 2048"),
        case("cmdline 1", v("cmdline", json!(1)), INVALID, "cmdline"),
        case("duplicate name", v("name", json!("disk")), CONFLICT, "'disk' already exists"),
    ];
    cases.extend(more);
    cloud.refuse_all(&alice, "/v1/images", &cases).await;
    let public = [case(
        "public",
        v("visibility", json!("public")),
        FORBIDDEN,
        "admin",
    )];
    cloud.refuse_all(&bob, "/v1/images", &public).await;
    let bob_images = cloud.get_ok(&bob, "/v1/images").await;
    assert_eq!(bob_images, json!([bob_kernel]), "bob sees only his own");

    // Positive controls: direct kernel boot with a cmdline of exactly 2048
    // characters; names are per project, so bob may have a "disk" too.
    let boot = json!({
        "name": "new", "os": "debian", "version": "12", "format": "raw",
        "kernel": "kernel", "initrd": "ramdisk", "cmdline": "x".repeat(2048),
    });
    let image = cloud.create_image(&alice, boot).await;
    assert_eq!(image["kernel"], kernel["id"]);
    assert_eq!(image["status"], "queued");
    cloud.create_image(&bob, image_record("disk", "raw")).await;
    let alice_disk = cloud.image(&alice, "disk").await;
    assert_eq!(alice_disk, disk, "each project sees its own 'disk'");
}

#[tokio::test]
async fn uploads_with_wrong_bytes_are_refused_and_the_image_stays_queued() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let raw = cloud.create_image(&alice, image_record("r", "raw")).await;
    let q = cloud.create_image(&alice, image_record("q", "qcow2")).await;
    let (raw, q) = (id(&raw).to_owned(), id(&q).to_owned());
    let mut vmdk = vec![0u8; 64 * 1024];
    vmdk[..4].copy_from_slice(b"KDMV");
    let random = uuid::Uuid::new_v4().to_string();
    let zeros = || vec![0u8; 4096];
    let (a, b) = (alice.as_str(), bob.as_str());
    let (r, qc, rnd) = (raw.as_str(), q.as_str(), random.as_str());

    // (what, who, image, bytes, expected error, what the message mentions)
    #[rustfmt::skip]
    let cases = [
        ("bob uploads to alice's image", b, r, zeros(), NOT_FOUND, "image not found"),
        ("unknown image id", a, rnd, zeros(), NOT_FOUND, "not found"),
        ("id not a uuid", a, "not-a-uuid", zeros(), NOT_FOUND, "not found"),
        ("image name, not id", a, "r", zeros(), NOT_FOUND, "not found"),
        ("empty upload", a, r, vec![], BAD, "the uploaded file is empty"),
        ("raw with qcow2 bytes", a, r, qcow2(GIB, None), BAD, "declared raw but its bytes are qcow2"),
        ("raw with vmdk bytes", a, r, vmdk, BAD, "vmdk, a format Nubis does not accept"),
        ("qcow2 with raw zeros", a, qc, vec![0; MIB], BAD, "declared qcow2 but its bytes are raw"),
        ("qcow2 backing file", a, qc, qcow2(GIB, Some("/etc/passwd")), BAD, "backing file '/etc/passwd'"),
        ("qcow2 virtual size 0", a, qc, qcow2(0, None), BAD, "virtual size of 0"),
        ("qcow2 header cut", a, qc, qcow2(GIB, None)[..50].to_vec(), BAD, "truncated"),
        ("qcow2 empty", a, qc, vec![], BAD, "empty"),
    ];
    for (what, who, image, bytes, want, why) in cases {
        let resp = cloud.upload(who, image, bytes).await;
        assert_error(what, resp, want, why).await;
        for image in [&raw, &q] {
            let now = cloud.image(a, image).await;
            assert_eq!(now["status"], "queued", "{what}: {now}");
            assert_eq!(now["size"], Value::Null, "{what}: {now}");
            assert_eq!(now["virtual_size"], Value::Null, "{what}: {now}");
            assert_eq!(now["checksum"], Value::Null, "{what}: {now}");
        }
        let left = files_in(&cloud.images_dir());
        assert!(left.is_empty(), "{what} left files behind: {left:?}");
    }

    // Positive control: bytes of the declared format are accepted, even when
    // bigger than the 1 MiB JSON limit.
    let bytes: Vec<u8> = (0..2 * MIB).map(|i| (i % 251) as u8).collect();
    let checksum = sha256_hex(&bytes);
    let image = ok_json(cloud.upload(a, &raw, bytes).await, StatusCode::OK).await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], 2 * MIB);
    assert_eq!(image["virtual_size"], 2 * MIB);
    assert_eq!(image["checksum"], checksum.as_str());
    let image = ok_json(cloud.upload(a, &q, qcow2(GIB, None)).await, StatusCode::OK).await;
    assert_eq!(image["virtual_size"], GIB);

    // Images are immutable: a second upload is refused and changes neither
    // the record nor the file.
    let before = cloud.image(a, &raw).await;
    let resp = cloud.upload(a, &raw, vec![7; 4096]).await;
    assert_error("second upload", resp, CONFLICT, "immutable").await;
    assert_eq!(cloud.image(a, &raw).await, before);
    let on_disk = std::fs::read(cloud.images_dir().join(&raw)).unwrap();
    assert_eq!(sha256_hex(&on_disk), checksum);
    // Another project still gets 404, not 409, for an image that exists.
    let resp = cloud.upload(b, &raw, vec![7; 4096]).await;
    assert_error(
        "bob uploads to an active image",
        resp,
        NOT_FOUND,
        "image not found",
    )
    .await;
    assert_eq!(files_in(&cloud.images_dir()), BTreeSet::from([raw, q]));
}

#[tokio::test]
async fn uploads_over_the_size_limit_are_413() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let image = cloud.create_image(&alice, image_record("big", "raw")).await;
    let too_big = vec![0u8; MAX_IMAGE_BYTES as usize + MIB];
    let resp = cloud.upload(&alice, id(&image), too_big).await;
    let msg = assert_error("oversized upload", resp, TOO_LARGE, "at most").await;
    assert!(msg.contains(&MAX_IMAGE_BYTES.to_string()), "{msg}");
    assert_eq!(cloud.image(&alice, id(&image)).await["status"], "queued");
    assert!(files_in(&cloud.images_dir()).is_empty());
    // Exactly at the limit is fine.
    let exact = vec![0u8; MAX_IMAGE_BYTES as usize];
    ok_json(
        cloud.upload(&alice, id(&image), exact).await,
        StatusCode::OK,
    )
    .await;
}

/// Two uploads of one image at once: images are immutable, so exactly one
/// may win and the other must get 409, and the record must describe the file
/// on disk. Upload A is held open mid-body while upload B runs, so the two
/// overlap every time.
#[tokio::test]
async fn concurrent_uploads_to_one_image_leave_one_consistent_file() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let image = cloud.create_image(&alice, image_record("r", "raw")).await;
    let image = id(&image);

    // Upload A: its body arrives in two parts, the second only when we say.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let a = cloud
        .req(
            Method::PUT,
            &format!("/v1/images/{image}/file"),
            Some(&alice),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let a = tokio::spawn(a);
    tx.send(Ok(vec![1u8; MIB])).await.unwrap();
    // A is past its checks once its temporary file exists.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while files_in(&cloud.images_dir()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "upload A never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Upload B, start to end, while A is in progress.
    let b = cloud
        .upload(&alice, image, vec![2u8; 2 * MIB])
        .await
        .status();
    tx.send(Ok(vec![1u8; MIB])).await.unwrap();
    drop(tx);
    let a = a.await.unwrap().unwrap().status();

    let mut statuses = [a, b];
    statuses.sort();
    let now = cloud.image(&alice, image).await;
    let on_disk = std::fs::read(cloud.images_dir().join(image)).unwrap();
    assert_eq!(
        now["checksum"].as_str(),
        Some(sha256_hex(&on_disk).as_str()),
        "the recorded checksum must be the file's (A {a}, B {b})"
    );
    let want = [StatusCode::OK, StatusCode::CONFLICT];
    assert_eq!(
        statuses, want,
        "one upload wins, the other is refused (A {a}, B {b})"
    );
    assert_eq!(
        files_in(&cloud.images_dir()),
        BTreeSet::from([image.to_owned()])
    );
}

/// An upload abandoned mid-body leaves no file behind and the image queued.
#[tokio::test]
async fn abandoned_upload_leaves_nothing_behind() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let image = cloud.create_image(&alice, image_record("r", "raw")).await;
    let image = id(&image);
    for how in ["client error", "client gone"] {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let upload = cloud
            .req(
                Method::PUT,
                &format!("/v1/images/{image}/file"),
                Some(&alice),
            )
            .body(reqwest::Body::wrap_stream(body))
            .send();
        let upload = tokio::spawn(upload);
        tx.send(Ok(vec![1u8; MIB])).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while files_in(&cloud.images_dir()).is_empty() {
            assert!(std::time::Instant::now() < deadline, "upload never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if how == "client error" {
            tx.send(Err(std::io::Error::other("disk on fire")))
                .await
                .unwrap();
            let _ = upload.await.unwrap();
        } else {
            upload.abort();
            let _ = upload.await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !files_in(&cloud.images_dir()).is_empty() {
            let left = files_in(&cloud.images_dir());
            assert!(std::time::Instant::now() < deadline, "{how}: left {left:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            cloud.image(&alice, image).await["status"],
            "queued",
            "{how}"
        );
    }
}

/// qcow2 images made by the real qemu-img (skipped without it).
#[tokio::test]
async fn qemu_img_images_are_checked_like_hand_built_ones() {
    let available = std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        // make test installs qemu-utils: in CI this test must really run.
        assert!(
            std::env::var_os("CI").is_none(),
            "qemu-img is required in CI"
        );
        eprintln!("note: qemu-img not found; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let make = |name: &str, extra: &[&str]| {
        let path = tmp.path().join(name);
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .args(extra)
            .arg(&path)
            .arg("2G")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(path).unwrap()
    };
    let backed = make("backed.qcow2", &["-b", "/etc/passwd", "-F", "raw"]);
    let plain = make("plain.qcow2", &[]);

    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    cloud.register_host().await;
    let q = cloud.create_image(&alice, image_record("q", "qcow2")).await;
    let r = cloud.create_image(&alice, image_record("r", "raw")).await;
    let resp = cloud.upload(&alice, id(&q), backed).await;
    let what = "qemu-img qcow2 with a backing file";
    assert_error(what, resp, BAD, "backing file '/etc/passwd'").await;
    let resp = cloud.upload(&alice, id(&r), plain.clone()).await;
    let what = "qemu-img qcow2 declared raw";
    assert_error(what, resp, BAD, "declared raw but its bytes are qcow2").await;
    for image in [&q, &r] {
        assert_eq!(cloud.image(&alice, id(image)).await["status"], "queued");
    }
    assert!(files_in(&cloud.images_dir()).is_empty());

    // Accepted as qcow2, with the virtual size from its header: a 1 GiB disk
    // is too small for it.
    let image = ok_json(cloud.upload(&alice, id(&q), plain).await, StatusCode::OK).await;
    assert_eq!(image["virtual_size"], 2 * GIB);
    let body = json!({"name": "web", "image": "q", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let small = [case(
        "disk below virtual size",
        body,
        BAD,
        "smaller than the image",
    )];
    cloud.refuse_all(&alice, "/v1/servers", &small).await;
}
