//! Every response of the portal (pages, errors, redirects, assets, and the
//! API and console it wraps) carries the security headers; the console page
//! keeps its own stricter policy.

use super::*;
use reqwest::header::{COOKIE, LOCATION};

/// The headers every response must carry: (name, what its value contains).
const REQUIRED: [(&str, &str); 4] = [
    ("content-security-policy", "frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

fn assert_headers(what: &str, resp: &Response) {
    for (name, want) in REQUIRED {
        let got = resp
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("{what} ({}): no {name}", resp.status()));
        let got = got.to_str().unwrap();
        assert!(got.contains(want), "{what}: {name}: {got:?}");
    }
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
}

#[tokio::test]
async fn every_portal_response_carries_the_security_headers() {
    let cloud = Cloud::start().await;
    let token = cloud.admin("alice").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let some = uuid::Uuid::new_v4();
    let pages = [
        "/",
        "/login",
        "/register",
        "/servers",
        "/servers/new",
        "/images",
        "/keypairs",
        "/networks",
        "/admin/hosts",
        "/admin/servers",
        "/assets/portal.css",
        "/assets/portal.js",
        "/no/such/page",
        "/v1/flavors",
        "/v1/openapi.json",
        "/healthz",
        "/static/console/console.js",
        "/static/novnc/core/rfb.js",
    ];
    let signed_in = format!("nubis_session={token}");
    let mut statuses = std::collections::BTreeSet::new();
    for cookie in [None, Some(signed_in.as_str())] {
        let mut paths: Vec<String> = pages.iter().map(|p| p.to_string()).collect();
        paths.push(format!("/servers/{some}"));
        for path in paths {
            let mut req = http.get(format!("{}{path}", cloud.base));
            if let Some(c) = cookie {
                req = req.header(COOKIE, c);
            }
            let resp = req.send().await.unwrap();
            let what = format!(
                "GET {path} {}",
                if cookie.is_some() {
                    "signed in"
                } else {
                    "anonymous"
                }
            );
            assert_headers(&what, &resp);
            statuses.insert(resp.status().as_u16());
        }
    }
    // A form without its CSRF token (an error page), and a logout (a redirect).
    let resp = http
        .post(format!("{}/login", cloud.base))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(super::accounts::form_body(&[
            ("name", "alice"),
            ("password", PASSWORD),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_headers("POST /login without CSRF", &resp);
    statuses.insert(resp.status().as_u16());
    // The kinds of answers above really were all seen: pages, redirects to
    // the login page, JSON errors, not found.
    for want in [200, 303, 401, 403, 404] {
        assert!(statuses.contains(&want), "no {want} among {statuses:?}");
    }
    let resp = http
        .get(format!("{}/servers", cloud.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()[LOCATION], "/login");

    // The console page keeps its stricter policy (no forms at all).
    let resp = http
        .get(format!("{}/console/{some}", cloud.base))
        .send()
        .await
        .unwrap();
    assert_headers("the console page", &resp);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'none'"), "{csp}");
}
