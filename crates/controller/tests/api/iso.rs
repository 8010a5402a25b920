//! Installing from an ISO.

use super::*;

/// The smallest bytes our parser takes for ISO 9660: "CD001" in the first
/// volume descriptor (sector 16 of 2 KiB sectors).
fn iso_bytes() -> Vec<u8> {
    let mut v = vec![0u8; 0x9000];
    v[0x8000] = 1; // primary volume descriptor
    v[0x8001..0x8006].copy_from_slice(b"CD001");
    v
}

/// The instance spec the server's host is told to run.
async fn desired_spec(cloud: &Cloud, host: &str, server: &str) -> Value {
    let resp = cloud
        .agent_req(Method::GET, &format!("/v1/agent/hosts/{host}/desired"))
        .send()
        .await
        .unwrap();
    let desired = ok_json(resp, StatusCode::OK).await;
    desired["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == server)
        .unwrap_or_else(|| panic!("{server} not in {desired}"))
        .clone()
}

#[tokio::test]
async fn iso_uploads_are_checked_and_iso_servers_eject_once() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let host = cloud.register_host().await;
    let host = id(&host).to_owned();

    // Bytes that are not ISO 9660 are refused; the image stays queued.
    let iso = cloud
        .create_image(&alice, image_record("inst", "iso"))
        .await;
    let iso_id = id(&iso).to_owned();
    #[rustfmt::skip]
    let cases = [
        ("iso with raw zeros", vec![0u8; MIB], "declared iso but its bytes are raw"),
        ("iso with qcow2 bytes", qcow2(GIB, None), "declared iso but its bytes are qcow2"),
        ("iso with CD001 at the wrong place", {
            let mut v = iso_bytes(); v[0x8001..0x8006].fill(0); v[0x8002..0x8007].copy_from_slice(b"CD001"); v
        }, "declared iso but its bytes are raw"),
        ("iso empty", vec![], "empty"),
    ];
    for (what, bytes, why) in cases {
        let resp = cloud.upload(&alice, &iso_id, bytes).await;
        assert_error(what, resp, BAD, why).await;
        let now = cloud.image(&alice, &iso_id).await;
        assert_eq!(now["status"], "queued", "{what}: {now}");
        assert!(files_in(&cloud.images_dir()).is_empty(), "{what}");
    }
    // An ISO takes no kernel, initrd or cmdline.
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/images",
            &with(&image_record("k", "iso"), "cmdline", json!("console=ttyS0")),
        )
        .await;
    assert_error("iso with cmdline", resp, BAD, "belong on a qcow2 or raw").await;
    // Real ISO bytes are accepted.
    let image = ok_json(
        cloud.upload(&alice, &iso_id, iso_bytes()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["format"], "iso");

    // A server from the ISO: a blank disk of any size, the ISO in the drive.
    let body =
        json!({"name": "inst", "image": "inst", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let server = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let sid = id(&server).to_owned();
    assert_eq!(server["cdrom_attached"], true, "{server}");
    let spec = desired_spec(&cloud, &host, &sid).await;
    assert_eq!(spec["disk_image"]["format"], "iso");
    assert_eq!(spec["cdrom"]["id"], iso_id.as_str(), "{spec}");
    assert_eq!(spec["cdrom"]["format"], "iso");

    // A server from a disk image has no drive to eject.
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let body = json!({"name": "plain", "image": "disk", "flavor": "tiny"});
    let plain = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(plain["cdrom_attached"], false);
    assert_eq!(
        desired_spec(&cloud, &host, id(&plain)).await["cdrom"],
        Value::Null
    );
    let path = format!("/v1/servers/{}/eject", id(&plain));
    let before = cloud
        .get_ok(&alice, &format!("/v1/servers/{}", id(&plain)))
        .await;
    let resp = cloud.post(Some(&alice), &path, &json!({})).await;
    assert_error("eject without ISO", resp, CONFLICT, "no ISO").await;
    let now = cloud
        .get_ok(&alice, &format!("/v1/servers/{}", id(&plain)))
        .await;
    assert_eq!(now, before);

    // Another project's server: 404, and the ISO stays in.
    let path = format!("/v1/servers/{sid}/eject");
    let resp = cloud.post(Some(&bob), &path, &json!({})).await;
    assert_error("bob ejects", resp, NOT_FOUND, "server not found").await;
    assert_eq!(
        cloud.get_ok(&alice, &format!("/v1/servers/{sid}")).await["cdrom_attached"],
        true
    );

    // Eject: the drive is empty in the spec; a second eject is a 409.
    let resp = cloud.post(Some(&alice), &path, &json!({})).await;
    let ejected = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(ejected["cdrom_attached"], false, "{ejected}");
    let spec = desired_spec(&cloud, &host, &sid).await;
    assert_eq!(spec["cdrom"], Value::Null, "{spec}");
    assert_eq!(spec["disk_image"]["format"], "iso", "still a blank disk");
    let resp = cloud.post(Some(&alice), &path, &json!({})).await;
    assert_error("second eject", resp, CONFLICT, "no ISO").await;

    // A server being deleted cannot be ejected.
    let body =
        json!({"name": "inst2", "image": "inst", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let second = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let resp = cloud
        .send(
            Method::DELETE,
            &format!("/v1/servers/{}", id(&second)),
            Some(&alice),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let path = format!("/v1/servers/{}/eject", id(&second));
    let resp = cloud.post(Some(&alice), &path, &json!({})).await;
    assert_error("eject while deleting", resp, CONFLICT, "being deleted").await;
}
