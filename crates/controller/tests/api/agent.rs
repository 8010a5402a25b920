//! The agent protocol.

use super::*;

#[tokio::test]
async fn agent_endpoints_need_the_agent_token() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("alice").await;
    let some = uuid::Uuid::new_v4();
    #[rustfmt::skip]
    let endpoints = [
        (Method::POST, "/v1/agent/hosts".to_owned(), Some(host_body())),
        (Method::GET, format!("/v1/agent/hosts/{some}/desired"), None),
        (Method::PUT, format!("/v1/agent/hosts/{some}/report"), Some(json!({"instances": []}))),
        (Method::GET, format!("/v1/agent/images/{some}/file"), None),
    ];
    let one_more = format!("{AGENT_TOKEN}0");
    let admin = admin.as_str();
    // (what, agent token header, bearer token)
    #[rustfmt::skip]
    let wrong: [(&str, Option<&str>, Option<&str>); 8] = [
        ("no agent token", None, None),
        ("empty agent token", Some(""), None),
        ("wrong agent token", Some("wrong"), None),
        ("agent token prefix", Some(&AGENT_TOKEN[..AGENT_TOKEN.len() - 1]), None),
        ("agent token plus one", Some(&one_more), None),
        ("user token as bearer", None, Some(admin)),
        ("agent token as bearer", None, Some(AGENT_TOKEN)),
        ("user token as agent token", Some(admin), None),
    ];
    for (what, agent_token, bearer) in wrong {
        for (method, path, body) in &endpoints {
            let mut r = cloud.req(method.clone(), path, bearer);
            if let Some(t) = agent_token {
                r = r.header(nubis_api::agent::AGENT_TOKEN_HEADER, t);
            }
            if let Some(b) = body {
                r = r.json(b);
            }
            let resp = r.send().await.unwrap();
            let what = format!("{what} on {method} {path}");
            assert_error(&what, resp, UNAUTHORIZED, "invalid agent token").await;
        }
    }
    assert_eq!(cloud.get_ok(admin, "/v1/hosts").await, json!([]));
    // Positive control: the right token registers the host.
    let registered = cloud.register_host().await;
    assert_eq!(registered["name"], "h1");
    assert_eq!(cloud.get_ok(admin, "/v1/hosts").await, json!([registered]));
}

#[tokio::test]
async fn an_image_download_resumes_from_a_byte_range() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("alice").await;
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let image = cloud
        .active_image(&admin, "blob", "raw", bytes.clone())
        .await;
    let path = format!("/v1/agent/images/{}/file", id(&image));
    let fetch = |range: Option<&'static str>| {
        let mut r = cloud
            .req(Method::GET, &path, None)
            .header(nubis_api::agent::AGENT_TOKEN_HEADER, AGENT_TOKEN);
        if let Some(range) = range {
            r = r.header(reqwest::header::RANGE, range);
        }
        async move { r.send().await.unwrap() }
    };
    // From byte 4000 on: 206 with the rest, and where it starts.
    let resp = fetch(Some("bytes=4000-")).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_RANGE],
        "bytes 4000-9999/10000"
    );
    assert_eq!(resp.bytes().await.unwrap(), bytes[4000..]);
    // Positive control and the fallbacks: no range, a range past the end or
    // of another form get the whole file.
    for range in [None, Some("bytes=10000-"), Some("bytes=0-99")] {
        let resp = fetch(range).await;
        assert_eq!(resp.status(), StatusCode::OK, "{range:?}");
        assert_eq!(resp.bytes().await.unwrap(), bytes, "{range:?}");
    }
}
