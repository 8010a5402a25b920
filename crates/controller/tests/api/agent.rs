//! The agent protocol.

use super::*;

#[tokio::test]
async fn agent_endpoints_need_a_host_certificate() {
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
    // TLS that trusts the cluster CA but shows no client certificate.
    let token = cloud.join_token_at(chrono::Utc::now()).await;
    let anonymous = nubis_pki::tls::reqwest_client(
        nubis_pki::tls::cluster_client_config(
            nubis_pki::tls::Trust::Pinned(token.ca_fingerprint().to_owned()),
            nubis_pki::Role::Controller,
            None,
        )
        .unwrap(),
        reqwest::Client::builder(),
    )
    .unwrap();
    for bearer in [None, Some(admin.as_str())] {
        for (method, path, body) in &endpoints {
            let mut r = cloud.agent_req_as(&anonymous, method.clone(), path);
            if let Some(t) = bearer {
                r = r.bearer_auth(t);
            }
            if let Some(b) = body {
                r = r.json(b);
            }
            let what = format!("no certificate (bearer {bearer:?}) on {method} {path}");
            assert_error(
                &what,
                r.send().await.unwrap(),
                UNAUTHORIZED,
                "host certificate",
            )
            .await;
        }
    }
    // The agent protocol is not served on the public API's port at all.
    for (method, path, body) in &endpoints {
        let mut r = cloud.req(method.clone(), path, Some(&admin));
        if let Some(b) = body {
            r = r.json(b);
        }
        assert_error(path, r.send().await.unwrap(), NOT_FOUND, "no such API path").await;
    }
    assert_eq!(cloud.get_ok(&admin, "/v1/hosts").await, json!([]));
    // Positive control: a joined host registers.
    let registered = cloud.register_host().await;
    assert_eq!(registered["name"], "h1");
    let resp = cloud
        .agent_req(Method::POST, "/v1/agent/hosts")
        .json(&host_body())
        .send()
        .await
        .unwrap();
    let again = ok_json(resp, StatusCode::OK).await;
    assert_eq!(again["id"], registered["id"]);
    assert_eq!(
        cloud
            .get_ok(&admin, "/v1/hosts")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_host_reads_and_reports_only_for_itself() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("alice").await;
    let first = cloud.register_host().await;
    let first_id = id(&first).to_owned();
    let mut second_body = host_body();
    second_body["name"] = json!("h2");
    second_body["url"] = json!("https://127.0.0.2:9");
    let (second, second_client) = cloud.join(&second_body).await;
    let second_id = id(&second).to_owned();
    let report = json!({"instances": []});
    // Positive controls: each host reads and reports its own state.
    for (client, host) in [(None, &first_id), (Some(&second_client), &second_id)] {
        let req = |m: Method, p: String| match client {
            Some(c) => cloud.agent_req_as(c, m, &p),
            None => cloud.agent_req(m, &p),
        };
        let resp = req(Method::GET, format!("/v1/agent/hosts/{host}/desired"))
            .send()
            .await
            .unwrap();
        ok_json(resp, StatusCode::OK).await;
        let resp = req(Method::PUT, format!("/v1/agent/hosts/{host}/report"))
            .json(&report)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    // The second host's certificate gets nothing of the first's.
    let resp = cloud
        .agent_req_as(
            &second_client,
            Method::GET,
            &format!("/v1/agent/hosts/{first_id}/desired"),
        )
        .send()
        .await
        .unwrap();
    assert_error("desired of another host", resp, FORBIDDEN, "own host only").await;
    let resp = cloud
        .agent_req_as(
            &second_client,
            Method::PUT,
            &format!("/v1/agent/hosts/{first_id}/report"),
        )
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_error("report for another host", resp, FORBIDDEN, "own host only").await;
    // Nor can it take the first host's name (with its own URL), nor register
    // itself at an address its certificate does not name.
    let mut steal = host_body();
    steal["url"] = json!("https://127.0.0.2:9");
    let resp = cloud
        .agent_req_as(&second_client, Method::POST, "/v1/agent/hosts")
        .json(&steal)
        .send()
        .await
        .unwrap();
    assert_error("another host's name", resp, FORBIDDEN, "not for host 'h1'").await;
    let mut moved = second_body.clone();
    moved["url"] = json!("https://127.0.0.1:9");
    let resp = cloud
        .agent_req_as(&second_client, Method::POST, "/v1/agent/hosts")
        .json(&moved)
        .send()
        .await
        .unwrap();
    assert_error(
        "a URL not in the certificate",
        resp,
        FORBIDDEN,
        "does not match",
    )
    .await;
    let hosts = cloud.get_ok(&admin, "/v1/hosts").await;
    let urls: BTreeSet<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        BTreeSet::from(["https://127.0.0.1:9", "https://127.0.0.2:9"])
    );
    // Joining again replaces a host's certificate: the old one stops working.
    let (_, renewed) = cloud.join(&second_body).await;
    let own = format!("/v1/agent/hosts/{second_id}/desired");
    let resp = cloud
        .agent_req_as(&second_client, Method::GET, &own)
        .send()
        .await
        .unwrap();
    assert_error("a replaced certificate", resp, FORBIDDEN, "no longer valid").await;
    let resp = cloud
        .agent_req_as(&renewed, Method::GET, &own)
        .send()
        .await
        .unwrap();
    ok_json(resp, StatusCode::OK).await;
}

#[tokio::test]
async fn join_tokens_are_single_use_and_expire() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("alice").await;
    let body = host_body();
    // Unknown secret (the right CA, so TLS is fine).
    let real = cloud.join_token_at(chrono::Utc::now()).await;
    let forged = nubis_pki::JoinToken::parse(&format!(
        "nubis-join.{}.{}",
        "0".repeat(64),
        real.ca_fingerprint()
    ))
    .unwrap();
    let (resp, _) = cloud.try_join(&forged, &body).await;
    assert_error("unknown token", resp, UNAUTHORIZED, "join token").await;
    // Expired: made two hours ago, valid for one.
    let old = cloud
        .join_token_at(chrono::Utc::now() - chrono::Duration::hours(2))
        .await;
    let (resp, _) = cloud.try_join(&old, &body).await;
    assert_error("expired token", resp, UNAUTHORIZED, "join token").await;
    // A plain-HTTP agent URL is refused before the token is spent.
    let mut plain = body.clone();
    plain["url"] = json!("http://127.0.0.1:9");
    let (resp, _) = cloud.try_join(&real, &plain).await;
    assert_error("http agent URL", resp, INVALID, "https").await;
    assert_eq!(cloud.get_ok(&admin, "/v1/hosts").await, json!([]));
    // Positive control: the real token joins, once.
    let (resp, _) = cloud.try_join(&real, &body).await;
    let joined = ok_json(resp, StatusCode::OK).await;
    assert_eq!(joined["host"]["name"], "h1");
    let (resp, _) = cloud.try_join(&real, &body).await;
    assert_error("used token", resp, UNAUTHORIZED, "join token").await;
    // A token naming another CA: the agent refuses the controller itself.
    let other_ca =
        nubis_pki::JoinToken::parse(&format!("nubis-join.{}.{}", real.secret(), "ab".repeat(32)))
            .unwrap();
    let config = nubis_pki::tls::cluster_client_config(
        nubis_pki::tls::Trust::Pinned(other_ca.ca_fingerprint().to_owned()),
        nubis_pki::Role::Controller,
        None,
    )
    .unwrap();
    let client = nubis_pki::tls::reqwest_client(config, reqwest::Client::builder()).unwrap();
    let err = client
        .post(format!("{}/v1/agent/join", cloud.cluster_base))
        .json(&json!({}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

#[tokio::test]
async fn an_image_download_resumes_from_a_byte_range() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("alice").await;
    cloud.register_host().await;
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let image = cloud
        .active_image(&admin, "blob", "raw", bytes.clone())
        .await;
    let path = format!("/v1/agent/images/{}/file", id(&image));
    let fetch = |range: Option<&'static str>| {
        let mut r = cloud.agent_req(Method::GET, &path);
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
