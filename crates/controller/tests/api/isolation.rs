//! Isolation between projects.

use super::*;

#[tokio::test]
async fn other_projects_get_404_not_403() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    cloud.register_host().await;
    let image = cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let body = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let resp = cloud.post(Some(&alice), "/v1/servers", &body).await;
    let server = ok_json(resp, StatusCode::ACCEPTED).await;
    let sid = id(&server).to_owned();
    let before = cloud.get_ok(&alice, &format!("/v1/servers/{sid}")).await;
    let random = uuid::Uuid::new_v4().to_string();

    let server_routes = |sid: &str| -> Vec<(Method, String)> {
        vec![
            (Method::GET, format!("/v1/servers/{sid}")),
            (Method::POST, format!("/v1/servers/{sid}/start")),
            (Method::POST, format!("/v1/servers/{sid}/stop")),
            (Method::POST, format!("/v1/servers/{sid}/reboot")),
            (Method::POST, format!("/v1/servers/{sid}/eject")),
            (Method::GET, format!("/v1/servers/{sid}/console-log")),
            (Method::DELETE, format!("/v1/servers/{sid}")),
        ]
    };
    // Bob, on alice's server: as if it did not exist, and it is untouched.
    for (method, path) in server_routes(&sid) {
        let resp = cloud.send(method.clone(), &path, Some(&bob)).await;
        let what = format!("bob {method} {path}");
        assert_error(&what, resp, NOT_FOUND, "server not found").await;
        let now = cloud.get_ok(&alice, &format!("/v1/servers/{sid}")).await;
        assert_eq!(now, before, "{what} changed alice's server");
    }
    // Anyone, on ids that are not UUIDs or belong to nothing.
    for bad_id in ["not-a-uuid", "123", "web", random.as_str()] {
        for (method, path) in server_routes(bad_id) {
            let resp = cloud.send(method.clone(), &path, Some(&alice)).await;
            assert_error(&format!("{method} {path}"), resp, NOT_FOUND, "not found").await;
        }
    }
    assert_eq!(cloud.get_ok(&bob, "/v1/servers").await, json!([]));
    assert_eq!(cloud.get_ok(&alice, "/v1/servers").await, json!([before]));

    // Alice's private image: invisible to bob by id and by name.
    for reference in [id(&image), "disk"] {
        let resp = cloud.get(&bob, &format!("/v1/images/{reference}")).await;
        let what = format!("bob GET image {reference}");
        assert_error(&what, resp, NOT_FOUND, "image not found").await;
    }
    for reference in ["not-a-uuid", random.as_str()] {
        let resp = cloud.get(&alice, &format!("/v1/images/{reference}")).await;
        assert_error(reference, resp, NOT_FOUND, "image not found").await;
    }
    assert_eq!(cloud.get_ok(&bob, "/v1/images").await, json!([]));
    assert_eq!(cloud.get_ok(&alice, "/v1/images").await, json!([image]));
}
