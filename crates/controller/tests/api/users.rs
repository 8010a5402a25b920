//! Registering users, and authentication: tokens, passwords, expiry.

use super::*;

#[tokio::test]
async fn register_rejects_bad_input_and_creates_no_user() {
    let cloud = Cloud::start().await;
    let valid = json!({"name": "alice", "password": PASSWORD});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let mut cases = bad_name_cases(&valid, "name");
    #[rustfmt::skip]
    let more = [
        case("short password", v("password", json!("1234567")), INVALID, "at least 8"),
        case("empty password", v("password", json!("")), INVALID, "at least 8"),
        case("long password", v("password", json!("p".repeat(1025))), INVALID, "at most 1024"),
        case("password 12345678", v("password", json!(12345678)), INVALID, "password"),
        case("no password", v("password", Value::Null), INVALID, "missing field `password`"),
        case("asking to be admin", v("admin", json!(true)), INVALID, "unknown field `admin`"),
        case("array body", json!([]), INVALID, "expected"),
        case("null body", json!(null), INVALID, "invalid type"),
        case("string body", json!("alice"), INVALID, "invalid type"),
    ];
    cases.extend(more);
    for c in &cases {
        let resp = cloud.post(None, "/v1/users", &c.body).await;
        assert_error(&c.what, resp, c.want, c.mention).await;
    }

    // Bodies that are not JSON, not declared as JSON, or too big.
    let json_ct = Some("application/json");
    for (what, body) in [
        ("truncated JSON", r#"{"name": "alice", "pass"#),
        ("not JSON", "{name: alice}"),
        (
            "trailing garbage",
            r#"{"name": "alice", "password": "12345678"} x"#,
        ),
        ("empty body", ""),
    ] {
        let resp = cloud.post_raw(None, "/v1/users", json_ct, body).await;
        assert_error(what, resp, BAD, "JSON").await;
    }
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let resp = cloud
            .post_raw(None, "/v1/users", ct, valid.to_string())
            .await;
        let what = format!("content type {ct:?}");
        assert_error(&what, resp, UNSUPPORTED, "application/json").await;
    }
    let huge = v("password", json!("p".repeat(MIB))).to_string();
    assert!(huge.len() > nubis_controller::http::MAX_JSON_BODY);
    let resp = cloud.post_raw(None, "/v1/users", json_ct, huge).await;
    assert_error("body over 1 MiB", resp, TOO_LARGE, "too large").await;

    // Nothing was created: alice's name is still free.
    let alice = cloud.register("alice").await;
    assert_eq!(
        alice["admin"], false,
        "registering never makes an admin: {alice}"
    );
    assert_eq!(alice["name"], "alice");

    // The boundaries are accepted: a 63-character name, an 8-character password.
    let body = json!({"name": "n".repeat(63), "password": "12345678"});
    let user = ok_json(
        cloud.post(None, "/v1/users", &body).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(user["admin"], false, "{user}");
}

#[tokio::test]
async fn register_duplicate_name_is_409_and_changes_nothing() {
    let cloud = Cloud::start().await;
    let first = cloud.register("alice").await;
    let again = json!({"name": "alice", "password": "another password"});
    let resp = cloud.post(None, "/v1/users", &again).await;
    let msg = assert_error("duplicate user", resp, CONFLICT, "already exists").await;
    assert!(msg.contains("alice"), "{msg}");
    // The first account is intact: its password still works, the second
    // one does not, and it is the same user.
    let ok = ok_json(cloud.login("alice", PASSWORD).await, StatusCode::CREATED).await;
    assert_eq!(ok["user"]["id"], first["id"]);
    assert_eq!(ok["user"]["admin"], false);
    let resp = cloud.login("alice", "another password").await;
    let what = "login with the duplicate's password";
    assert_error(what, resp, UNAUTHORIZED, "wrong user name or password").await;
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_bad_and_revoked_tokens_are_401() {
    let cloud = Cloud::start().await;
    let token = cloud.user("alice").await;
    let expired = "invalid or expired token";
    let scheme = "'Bearer <token>'";
    // (what, Authorization header, what the message mentions)
    #[rustfmt::skip]
    let cases: [(&str, Option<String>, &str); 8] = [
        ("no Authorization header", None, "missing 'Authorization"),
        ("garbage token", Some("Bearer garbage".into()), expired),
        ("unknown token", Some(format!("Bearer nbs_{}", "0".repeat(64))), expired),
        ("token plus one character", Some(format!("Bearer {token}x")), expired),
        ("empty bearer", Some("Bearer ".into()), scheme),
        ("scheme only", Some("Bearer".into()), scheme),
        ("basic auth", Some("Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==".into()), scheme),
        ("token without scheme", Some(token.clone()), scheme),
    ];
    for (what, header, why) in &cases {
        for path in ["/v1/users/me", "/v1/servers", "/v1/images", "/v1/flavors"] {
            let mut r = cloud.req(Method::GET, path, None);
            if let Some(h) = header {
                r = r.header(AUTHORIZATION, h);
            }
            let resp = r.send().await.unwrap();
            assert_error(&format!("{what} on {path}"), resp, UNAUTHORIZED, why).await;
        }
    }

    // Authentication comes before validation: an anonymous bad request is
    // told to log in, not what is wrong with its body.
    let body = json!({"name": "", "image": "x"});
    let resp = cloud.post(None, "/v1/servers", &body).await;
    assert_error("anonymous bad create", resp, UNAUTHORIZED, "Authorization").await;
    let resp = cloud.send(Method::DELETE, "/v1/tokens/current", None).await;
    assert_error("anonymous logout", resp, UNAUTHORIZED, "Authorization").await;

    // Logout revokes exactly the token used, not the user's other sessions.
    let other = cloud.token("alice").await;
    cloud.get_ok(&token, "/v1/users/me").await;
    let resp = cloud
        .send(Method::DELETE, "/v1/tokens/current", Some(&token))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for path in ["/v1/users/me", "/v1/servers"] {
        let resp = cloud.get(&token, path).await;
        let what = format!("revoked token on {path}");
        assert_error(&what, resp, UNAUTHORIZED, "log in again").await;
    }
    let resp = cloud
        .send(Method::DELETE, "/v1/tokens/current", Some(&token))
        .await;
    assert_error("second logout", resp, UNAUTHORIZED, expired).await;
    let me = cloud.get_ok(&other, "/v1/users/me").await;
    assert_eq!(me["name"], "alice");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let cloud = Cloud::start().await;
    cloud.register("alice").await;
    let resp = cloud.login("alice", "wrong password").await;
    let wrong = assert_error("wrong password", resp, UNAUTHORIZED, "").await;
    let resp = cloud.login("nobody", PASSWORD).await;
    let unknown = assert_error("unknown user", resp, UNAUTHORIZED, "").await;
    assert_eq!(
        wrong, unknown,
        "the answers must not tell which names exist"
    );
    assert!(wrong.contains("wrong user name or password"), "{wrong}");
    let resp = cloud.login("alice", &PASSWORD.to_uppercase()).await;
    assert_error("password in upper case", resp, UNAUTHORIZED, "").await;
    let resp = cloud.login("Alice", PASSWORD).await;
    assert_error("name in another case", resp, UNAUTHORIZED, "").await;
}

#[tokio::test]
async fn expired_token_is_401() {
    let cloud = Cloud::start_with_token_ttl(Duration::from_secs(1)).await;
    cloud.register("alice").await;
    let login = ok_json(cloud.login("alice", PASSWORD).await, StatusCode::CREATED).await;
    let token = login["token"].as_str().unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(login["expires_at"].clone()).unwrap();
    let left = expires - chrono::Utc::now();
    assert!(left <= chrono::Duration::seconds(1), "expires_at {expires}");
    cloud.get_ok(token, "/v1/users/me").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for path in ["/v1/users/me", "/v1/servers"] {
        let resp = cloud.get(token, path).await;
        let what = format!("expired token on {path}");
        assert_error(&what, resp, UNAUTHORIZED, "expired").await;
    }
}
