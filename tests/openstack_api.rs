//! The OpenStack wire formats themselves, over HTTP (no client needed),
//! against a `nubis up` in a network namespace: token scopes, validation
//! and revocation, the directory's visibility, Keystone's and Nova's error
//! shapes, 404 / 501 / 406, a refused create changing nothing, and the
//! audit trail naming OpenStack calls as their `/v1` twins.
//! tests/openstack_cli.rs runs the real clients.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::cloud::{admin_create_user, Cloud};
use support::netns::run_in_netns;

const ADMIN: (&str, &str) = ("root", "admin-secret-1");
const MEMBER: (&str, &str) = ("alice", "alice-secret-1");

/// A password login body for `user`, scoped as `scope` says.
fn password_auth(user: (&str, &str), scope: Value) -> Value {
    let mut auth = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user.0, "domain": {"id": "default"}, "password": user.1}}}}});
    if !scope.is_null() {
        auth["auth"]["scope"] = scope;
    }
    auth
}

/// The wire formats and errors themselves, over HTTP (no client needed):
/// token scopes, validation and revocation, the shapes of Keystone's and
/// Nova's errors, 404 / 501 / 406, and a refused create changing nothing.
#[test]
fn openstack_wire_formats_and_errors() {
    run_in_netns("oswire", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login(MEMBER.0, MEMBER.1).await;
        let (_, member) = cloud.call(Method::GET, "/v1/users/me", None).await;
        let data_dir = cloud.data_path().to_string_lossy().into_owned();
        admin_create_user(&["--data-dir", &data_dir], ADMIN.0, ADMIN.1, true);
        let http = cloud.http().clone();
        let url = cloud.url.clone();
        let tokens = format!("{url}/identity/v3/auth/tokens");
        let issue = |body: Value| {
            let req = http.post(&tokens).json(&body);
            async move {
                let r = req.send().await.unwrap();
                let status = r.status();
                let token = r
                    .headers()
                    .get("x-subject-token")
                    .map(|v| v.to_str().unwrap().to_owned());
                (
                    status,
                    token,
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };

        // Scoped by name: project, roles and catalog.
        let scope = json!({"project": {"name": MEMBER.0, "domain": {"name": "Default"}}});
        let (s, token, body) = issue(password_auth(MEMBER, scope)).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let token = token.expect("X-Subject-Token");
        assert_eq!(body["token"]["project"]["id"], member["project"]);
        let roles: Vec<&str> = body["token"]["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            roles.contains(&"member") && !roles.contains(&"admin"),
            "{roles:?}"
        );
        // Every service served, each once (identity, compute, image, ...).
        let kinds: Vec<&str> = body["token"]["catalog"]
            .as_array()
            .map(|c| c.iter().filter_map(|e| e["type"].as_str()).collect())
            .unwrap_or_default();
        for kind in ["identity", "compute", "image"] {
            assert_eq!(kinds.iter().filter(|k| **k == kind).count(), 1, "{kinds:?}");
        }
        // Scoped by id; and unscoped: no project, no catalog.
        let scope = json!({"project": {"id": member["project"]}});
        let (s, _, body) = issue(password_auth(MEMBER, scope)).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let (s, unscoped, body) = issue(password_auth(MEMBER, Value::Null)).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert!(body["token"].get("project").is_none() && body["token"].get("catalog").is_none());
        let unscoped = unscoped.unwrap();
        // Another project, a domain scope, a wrong password: 401, Keystone's shape.
        let (_, admin_token, admin_body) = issue(password_auth(
            ADMIN,
            json!({"project": {"name": ADMIN.0, "domain": {"id": "default"}}}),
        ))
        .await;
        let admin_token = admin_token.expect("admin token");
        let admin_roles = admin_body["token"]["roles"].to_string();
        assert!(admin_roles.contains("\"admin\""), "{admin_roles}");
        for body in [
            password_auth(
                MEMBER,
                json!({"project": {"id": admin_body["token"]["project"]["id"]}}),
            ),
            password_auth(MEMBER, json!({"domain": {"id": "default"}})),
            password_auth((MEMBER.0, "wrong-password"), Value::Null),
        ] {
            let (s, t, b) = issue(body.clone()).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{body} -> {b}");
            assert!(t.is_none());
            assert_eq!(b["error"]["code"], 401, "{b}");
            assert_eq!(b["error"]["title"], "Unauthorized", "{b}");
        }
        // Failed logins are throttled by the same rule as /v1's: past the
        // limit (5 a minute per name), Keystone answers 429 with
        // Retry-After, and so does /v1 even with the right password.
        let (s, b) = cloud
            .call(
                Method::POST,
                "/v1/users",
                Some(json!({"name": "mallory", "password": "mallory-secret"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        for _ in 0..5 {
            let (s, _, b) = issue(password_auth(("mallory", "guess-guess"), Value::Null)).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        }
        let (s, _, b) = issue(password_auth(("mallory", "mallory-secret"), Value::Null)).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
        assert_eq!(b["error"]["code"], 429, "{b}");
        let (s, b) = cloud
            .call(
                Method::POST,
                "/v1/tokens",
                Some(json!({"name": "mallory", "password": "mallory-secret"})),
            )
            .await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");

        // A malformed body: 400.
        let (s, _, b) = issue(json!({"auth": {}})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["code"], 400, "{b}");

        // Validation: one's own token (HEAD and GET); another's is not found
        // for a member, visible to an admin.
        let validate = |method: Method, auth: &str, subject: &str| {
            http.request(method, &tokens)
                .header("X-Auth-Token", auth)
                .header("X-Subject-Token", subject)
                .send()
        };
        let r = validate(Method::HEAD, &token, &token).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = validate(Method::GET, &token, &unscoped).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["token"]["user"]["id"], member["id"], "{b}");
        let r = validate(Method::GET, &token, &admin_token).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = validate(Method::GET, &admin_token, &token).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Revocation: the token stops working everywhere.
        let r = validate(Method::DELETE, &token, &unscoped).await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = validate(Method::GET, &token, &unscoped).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = http
            .get(format!("{url}/v1/users/me"))
            .bearer_auth(&unscoped)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        // Compute: no token is 401 in Keystone's shape; errors in Nova's.
        let compute = |method: Method, path: &str, auth: Option<&str>| {
            let mut req = http.request(method, format!("{url}/compute/v2.1{path}"));
            if let Some(t) = auth {
                req = req.header("X-Auth-Token", t);
            }
            req
        };
        let call = |req: reqwest::RequestBuilder| async move {
            let r = req.send().await.unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        };
        let (s, b) = call(compute(Method::GET, "/flavors", None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        assert_eq!(b["error"]["title"], "Unauthorized", "{b}");
        let (s, b) = call(compute(Method::GET, "/flavors", Some(&admin_token))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let flavor_count = b["flavors"].as_array().unwrap().len();
        let (s, b) = call(compute(
            Method::GET,
            "/flavors/no-such-flavor",
            Some(&admin_token),
        ))
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(b["itemNotFound"]["code"], 404, "{b}");
        let (s, b) = call(compute(Method::GET, "/os-hypervisors", Some(&admin_token))).await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(b["notImplemented"]["code"], 501, "{b}");
        let (s, b) = call(compute(Method::GET, "/no-such-thing", Some(&admin_token))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(b["itemNotFound"]["code"], 404, "{b}");
        let (s, b) = call(
            compute(Method::GET, "/flavors", Some(&admin_token))
                .header("OpenStack-API-Version", "compute 2.95"),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_ACCEPTABLE, "{b}");
        // A flavor Nubis cannot honour (swap): 400, and nothing is made.
        let (s, b) = call(
            compute(Method::POST, "/flavors", Some(&admin_token)).json(&json!(
                {"flavor": {"name": "swappy", "ram": 256, "vcpus": 1, "disk": 1, "swap": 512}}
            )),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["badRequest"]["code"], 400, "{b}");
        let (s, b) = call(compute(Method::GET, "/flavors", Some(&admin_token))).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["flavors"].as_array().unwrap().len(), flavor_count, "{b}");
        // A flavor Nubis can make: the trail names it (see below).
        let (s, b) = call(
            compute(Method::POST, "/flavors", Some(&admin_token))
                .json(&json!({"flavor": {"name": "plain", "ram": 256, "vcpus": 1, "disk": 1}})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let created_flavor = b["flavor"]["id"].as_str().unwrap().to_owned();
        // A duplicate key pair name: 409 conflictingRequest.
        let member_token = issue(password_auth(MEMBER, Value::Null)).await.1.unwrap();
        let body = json!({"keypair": {"name": "dup"}});
        let (s, b) =
            call(compute(Method::POST, "/os-keypairs", Some(&member_token)).json(&body)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert!(b["keypair"]["private_key"]
            .as_str()
            .is_some_and(|k| k.contains("PRIVATE KEY")));
        let (s, b) =
            call(compute(Method::POST, "/os-keypairs", Some(&member_token)).json(&body)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["conflictingRequest"]["code"], 409, "{b}");
        // Another project's quota set is not found; one's own is there.
        let admin_project = admin_body["token"]["project"]["id"].as_str().unwrap();
        let (s, b) = call(compute(
            Method::GET,
            &format!("/os-quota-sets/{admin_project}"),
            Some(&member_token),
        ))
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        let own = member["project"].as_str().unwrap();
        let (s, b) = call(compute(
            Method::GET,
            &format!("/os-quota-sets/{own}/detail"),
            Some(&member_token),
        ))
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["quota_set"]["key_pairs"]["in_use"], 1, "{b}");
        // Unknown identity paths: 404; known ones not served: 501.
        let (s, b) = call(http.get(format!("{url}/identity/v3/nonsense"))).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(b["error"]["code"], 404, "{b}");
        let (s, b) = call(
            http.get(format!("{url}/identity/v3/domains"))
                .header("X-Auth-Token", &admin_token),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{b}");
        let (s, b) = call(
            http.post(format!("{url}/identity/v3/projects"))
                .header("X-Auth-Token", &admin_token)
                .json(&json!({"project": {"name": "new"}})),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{b}");
        // The directory: a member sees itself and its project only.
        let (s, b) = call(
            http.get(format!("{url}/identity/v3/projects"))
                .header("X-Auth-Token", &member_token),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let listed: Vec<&Value> = b["projects"].as_array().unwrap().iter().collect();
        assert_eq!(listed.len(), 1, "{b}");
        assert_eq!(listed[0]["id"], member["project"], "{b}");
        let admin_id = admin_body["token"]["user"]["id"].as_str().unwrap();
        for path in [
            format!("users/{admin_id}"),
            format!("users/{admin_id}/projects"),
            format!("projects/{admin_project}"),
        ] {
            let (s, b) = call(
                http.get(format!("{url}/identity/v3/{path}"))
                    .header("X-Auth-Token", &member_token),
            )
            .await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {b}");
            // Positive control: the admin sees it.
            let (s, b) = call(
                http.get(format!("{url}/identity/v3/{path}"))
                    .header("X-Auth-Token", &admin_token),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{path}: {b}");
        }

        // The audit trail has the OpenStack calls under their /v1 names:
        // the wrong password (denied), the refused flavor, the key pair.
        cloud.login(ADMIN.0, ADMIN.1).await;
        support::wait_for(
            "the OpenStack calls in the audit trail",
            std::time::Duration::from_secs(30),
            || async {
                let (_, page) = cloud.call(Method::GET, "/v1/audit?limit=200", None).await;
                let events = page["events"].as_array().cloned().unwrap_or_default();
                let has = |action: &str, path: &str, outcome: &str| {
                    events.iter().any(|e| {
                        e["action"] == action && e["path"] == path && e["outcome"] == outcome
                    })
                };
                (has("token.create", "/identity/v3/auth/tokens", "denied")
                    && has("token.create", "/identity/v3/auth/tokens", "success")
                    && has("token.delete", "/identity/v3/auth/tokens", "success")
                    && has("flavor.create", "/compute/v2.1/flavors", "failure")
                    && events.iter().any(|e| {
                        e["action"] == "flavor.create"
                            && e["outcome"] == "success"
                            && e["object_id"] == created_flavor.as_str()
                    })
                    && has("keypair.create", "/compute/v2.1/os-keypairs", "success"))
                .then_some(())
            },
        )
        .await;
    });
}
