//! Routing and the API description.

use super::*;

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_in_json() {
    let cloud = Cloud::start().await;
    let some = uuid::Uuid::new_v4();
    // `/` itself is the web portal (crates/portal); other unknown paths are the API's.
    let not_found = [
        (Method::GET, "/nope".to_owned()),
        (Method::GET, "/v1".to_owned()),
        (Method::GET, "/v1/".to_owned()),
        (Method::GET, "/v1/nope".to_owned()),
        (Method::POST, "/v1/volumes".to_owned()),
        (Method::GET, "/v2/servers".to_owned()),
        (Method::GET, "/v1/servers/".to_owned()),
        (Method::GET, format!("/v1/servers/{some}/nope")),
        (Method::GET, format!("/v1/images/{some}/file/x")),
        // The agent protocol is served on its own listener only.
        (Method::GET, "/v1/agent/hosts".to_owned()),
        (Method::POST, "/v1/agent/join".to_owned()),
    ];
    for (method, path) in not_found {
        let resp = cloud.send(method.clone(), &path, None).await;
        let what = format!("{method} {path}");
        assert_error(&what, resp, NOT_FOUND, "no such API path").await;
    }
    let not_allowed = [
        (Method::DELETE, "/v1/flavors".to_owned()),
        (Method::PUT, "/v1/servers".to_owned()),
        (Method::GET, "/v1/tokens".to_owned()),
        (Method::GET, "/v1/users".to_owned()),
        (Method::POST, "/v1/openapi.json".to_owned()),
        (Method::PUT, format!("/v1/servers/{some}")),
        (Method::GET, format!("/v1/servers/{some}/start")),
        (Method::POST, format!("/v1/images/{some}/file")),
        (Method::PATCH, format!("/v1/images/{some}")),
    ];
    for (method, path) in not_allowed {
        let resp = cloud.send(method.clone(), &path, None).await;
        let what = format!("{method} {path}");
        assert_error(&what, resp, NOT_ALLOWED, "not allowed").await;
    }
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// Every `.route(path, method(...))` in the router, read from its source, so
/// that a route added without an OpenAPI annotation fails the test below.
fn router_routes() -> Vec<(String, Vec<&'static str>)> {
    // The public router only: the agent protocol (`agent_router`, its own
    // mutual-TLS listener) is not part of the public API's description.
    let source = include_str!("../../src/http/mod.rs")
        .split("pub fn agent_router")
        .next()
        .unwrap();
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(".route(") {
        rest = &rest[start + ".route(".len()..];
        let open = rest.find('"').expect("route path");
        let close = open + 1 + rest[open + 1..].find('"').expect("end of path");
        let path = rest[open + 1..close].to_owned();
        let handlers = &rest[close..rest.find(".route(").unwrap_or(rest.len())];
        // `get(`, `.post(`, `axum::routing::delete(`, but not `forget(`.
        let calls = |m: &str| {
            handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
                let before = handlers.as_bytes()[i - 1];
                !(before.is_ascii_alphanumeric() || before == b'_')
            })
        };
        let methods: Vec<&'static str> = METHODS.into_iter().filter(|m| calls(m)).collect();
        assert!(!methods.is_empty(), "no method found for route {path}");
        routes.push((path, methods));
    }
    routes
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let routes = router_routes();
    assert!(routes.len() >= 20, "parsed routes: {routes:?}");
    let cloud = Cloud::start().await;
    let resp = cloud.send(Method::GET, "/v1/openapi.json", None).await;
    let spec = ok_json(resp, StatusCode::OK).await;
    let paths = spec["paths"].as_object().expect("paths");

    let required = [
        ("/v1/users", "post"),
        ("/v1/tokens", "post"),
        ("/v1/tokens/current", "delete"),
        ("/v1/users/me", "get"),
        ("/v1/flavors", "get"),
        ("/v1/flavors", "post"),
        ("/v1/images", "get"),
        ("/v1/images", "post"),
        ("/v1/images/{id}", "get"),
        ("/v1/images/{id}/file", "put"),
        ("/v1/servers", "get"),
        ("/v1/servers", "post"),
        ("/v1/servers/{id}", "get"),
        ("/v1/servers/{id}", "delete"),
        ("/v1/servers/{id}/start", "post"),
        ("/v1/servers/{id}/stop", "post"),
        ("/v1/servers/{id}/reboot", "post"),
        ("/v1/servers/{id}/console-log", "get"),
    ];
    let mut expected: BTreeSet<(String, String)> = required
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    for (path, methods) in &routes {
        // The description need not describe itself.
        if path == "/openapi.json" {
            continue;
        }
        for m in methods {
            expected.insert((format!("/v1{path}"), m.to_string()));
        }
    }
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            let ops = ops.as_object().unwrap().keys();
            ops.filter(|k| METHODS.contains(&k.as_str()))
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
}
