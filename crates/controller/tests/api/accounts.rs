//! Accounts: registration open or closed, admins never made by registering,
//! failed logins throttled per user name and per client address (also
//! through the portal's form), and no internal URLs or paths in errors.

use super::*;
use nubis_controller::clock::Clock;
use nubis_controller::login_throttle::ThrottleLimits;
use reqwest::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use std::net::IpAddr;

const TOO_MANY: Want = (StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
const CLOSED: Want = (StatusCode::FORBIDDEN, "registration_closed");

/// A cloud whose clock the test moves forward (through the offset file
/// `clock-offset` in the returned directory), with default limits.
async fn cloud_with_clock() -> (Cloud, tempfile::TempDir) {
    let clock_dir = tempfile::tempdir().unwrap();
    let clock = Clock::with_offset_file(clock_dir.path().join("clock-offset"));
    let cloud = Cloud::start_with(Duration::from_secs(3600), clock).await;
    (cloud, clock_dir)
}

/// A client whose connections come from `source` (any 127.0.0.0/8 address
/// reaches the controller on 127.0.0.1 over loopback).
fn client_from(source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().unwrap();
    reqwest::Client::builder()
        .local_address(source)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn login_from(cloud: &Cloud, http: &reqwest::Client, name: &str, password: &str) -> Response {
    http.post(format!("{}/v1/tokens", cloud.base))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap()
}

/// The `Retry-After` seconds of a response, which must be there.
fn retry_after(resp: &Response) -> u64 {
    let value = resp
        .headers()
        .get(RETRY_AFTER)
        .expect("a Retry-After header");
    value
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds")
}

#[tokio::test]
async fn the_sixth_wrong_password_within_a_minute_is_429_until_the_window_passes() {
    let (cloud, clock_dir) = cloud_with_clock().await;
    cloud.register("alice").await;
    let defaults = ThrottleLimits::default();
    assert_eq!((defaults.per_user, defaults.window.as_secs()), (5, 60));
    for i in 1..=5 {
        let resp = cloud.login("alice", "wrong password").await;
        assert_error(&format!("wrong password {i}"), resp, UNAUTHORIZED, "wrong").await;
    }
    // The sixth: refused before the password is even checked.
    let resp = cloud.login("alice", "wrong password").await;
    let wait = retry_after(&resp);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let msg = assert_error(
        "sixth wrong password",
        resp,
        TOO_MANY,
        "too many failed logins",
    )
    .await;
    assert!(msg.contains("try again in"), "{msg}");
    // Within the window even the right password waits (else the throttle
    // would tell a guesser when it found it).
    let resp = cloud.login("alice", PASSWORD).await;
    assert_error("right password, throttled", resp, TOO_MANY, "too many").await;

    // After the window the right password works at once ...
    std::fs::write(clock_dir.path().join("clock-offset"), "61").unwrap();
    let ok = ok_json(cloud.login("alice", PASSWORD).await, StatusCode::CREATED).await;
    assert_eq!(ok["user"]["name"], "alice");
    // ... and the success cleared alice's count: five more wrong passwords
    // are answered 401, the sixth 429 again.
    for i in 1..=5 {
        let resp = cloud.login("alice", "wrong again").await;
        assert_error(
            &format!("after the reset, wrong {i}"),
            resp,
            UNAUTHORIZED,
            "wrong",
        )
        .await;
    }
    let resp = cloud.login("alice", "wrong again").await;
    assert_error("after the reset, sixth", resp, TOO_MANY, "for this user").await;
    // Positive control: another user from the same address logs in.
    cloud.register("bob").await;
    ok_json(cloud.login("bob", PASSWORD).await, StatusCode::CREATED).await;
}

#[tokio::test]
async fn one_address_is_throttled_across_user_names() {
    let cloud = Cloud::start().await;
    cloud.register("carol").await;
    let attacker = client_from("127.0.0.2");
    let per_address = ThrottleLimits::default().per_address;
    // One guess for each of many names (most of which do not exist).
    for i in 0..per_address {
        let resp = login_from(&cloud, &attacker, &format!("guess{i}"), "password1").await;
        assert_error(&format!("guess {i}"), resp, UNAUTHORIZED, "wrong").await;
    }
    let resp = login_from(&cloud, &attacker, "carol", "password1").await;
    assert!(retry_after(&resp) >= 1);
    assert_error("one name too many", resp, TOO_MANY, "from this address").await;
    let resp = login_from(&cloud, &attacker, "carol", PASSWORD).await;
    assert_error("even the right one", resp, TOO_MANY, "from this address").await;
    // Positive controls: from another address carol logs in, and a wrong
    // password there is an ordinary 401.
    let other = client_from("127.0.0.3");
    let ok = ok_json(
        login_from(&cloud, &other, "carol", PASSWORD).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(ok["user"]["name"], "carol");
    let resp = login_from(&cloud, &other, "dave", "password1").await;
    assert_error("another address", resp, UNAUTHORIZED, "wrong").await;
}

/// An `application/x-www-form-urlencoded` body.
pub(super) fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let pairs: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    pairs.join("&")
}

/// The portal's login form, sent from `http` (with the pre-login CSRF
/// cookie and field the login page hands out).
async fn portal_login(
    cloud: &Cloud,
    http: &reqwest::Client,
    name: &str,
    password: &str,
) -> Response {
    let page = http
        .get(format!("{}/login", cloud.base))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let csrf = cookie.split_once('=').unwrap().1.to_owned();
    http.post(format!("{}/login", cloud.base))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("_csrf", &csrf),
            ("name", name),
            ("password", password),
        ]))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_portal_login_is_throttled_with_the_browser_address() {
    let cloud = Cloud::start().await;
    cloud.register("erin").await;
    let browser = client_from("127.0.0.4");
    // Positive control: the form logs in (303 to the instances page).
    let resp = portal_login(&cloud, &browser, "erin", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    for i in 1..=5 {
        let resp = portal_login(&cloud, &browser, "erin", "wrong password").await;
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "portal attempt {i}"
        );
    }
    let resp = portal_login(&cloud, &browser, "erin", "wrong password").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&resp) >= 1);
    let page = resp.text().await.unwrap();
    assert!(page.contains("too many failed logins"), "{page}");
    // The API saw the browser's address: more wrong names from it through
    // the portal fill the address's count, which then refuses that address
    // on the API too, and only that address.
    let per_address = ThrottleLimits::default().per_address;
    for i in 5..per_address {
        let resp = portal_login(&cloud, &browser, &format!("name{i}"), "wrong password").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "portal guess {i}");
    }
    let resp = login_from(&cloud, &browser, "someone", "password1").await;
    assert_error(
        "the browser's address on the API",
        resp,
        TOO_MANY,
        "from this address",
    )
    .await;
    let resp = login_from(&cloud, &client_from("127.0.0.5"), "someone", "password1").await;
    assert_error("another address on the API", resp, UNAUTHORIZED, "wrong").await;
}

#[tokio::test]
async fn closed_registration_is_403_and_open_registration_makes_no_admin() {
    let closed = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            accounts: Some(AccountSettings::default()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        AccountSettings::default().registration,
        Registration::Closed
    );
    let status = closed.send(Method::GET, "/v1/registration", None).await;
    assert_eq!(
        ok_json(status, StatusCode::OK).await,
        json!({"registration": "closed"})
    );
    let body = json!({"name": "mallory", "password": PASSWORD});
    let resp = closed.post(None, "/v1/users", &body).await;
    assert_error(
        "register while closed",
        resp,
        CLOSED,
        "registration is closed",
    )
    .await;
    let resp = closed.login("mallory", PASSWORD).await;
    assert_error("no account was made", resp, UNAUTHORIZED, "wrong").await;
    // The portal's page says so instead of showing a form.
    let page = closed.send(Method::GET, "/register", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("Registration is closed"), "{page}");
    assert!(!page.contains("name=\"password\""), "no form: {page}");
    // Positive control: the operator's admin logs in and works.
    let admin = closed.admin("root").await;
    let me = closed.get_ok(&admin, "/v1/users/me").await;
    assert_eq!(me["admin"], true, "{me}");
    closed.get_ok(&admin, "/v1/hosts").await;

    let open = Cloud::start().await;
    let status = open.send(Method::GET, "/v1/registration", None).await;
    assert_eq!(
        ok_json(status, StatusCode::OK).await,
        json!({"registration": "open"})
    );
    // The first to register is not an admin (a cloud exposed before its
    // operator registers is not taken over) ...
    let first = open.register("mallory").await;
    assert_eq!(first["admin"], false, "{first}");
    let token = open.token("mallory").await;
    let resp = open.get(&token, "/v1/hosts").await;
    assert_error("first user on an admin call", resp, FORBIDDEN, "admin").await;
    // ... and the portal's form is there.
    let page = open.send(Method::GET, "/register", None).await;
    assert!(page.text().await.unwrap().contains("name=\"password\""));
}

#[tokio::test]
async fn errors_shown_to_tenants_have_no_internal_url_or_path() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    // The host's agent "listens" on a port nothing answers.
    let host = cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let body = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let server = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let sid = id(&server).to_owned();
    let internal = [
        "127.0.0.1",
        "http://",
        ":9/",
        "/v1/instances",
        "/var/",
        "/tmp/",
        ".qcow2",
    ];
    let clean = |what: &str, text: &str| {
        for bad in internal {
            assert!(!text.contains(bad), "{what} shows {bad:?}: {text}");
        }
    };

    // The agent cannot be reached: a 502 saying so, without its URL.
    let resp = cloud
        .get(&alice, &format!("/v1/servers/{sid}/console-log"))
        .await;
    let msg = assert_error(
        "console log of an unreachable host",
        resp,
        (StatusCode::BAD_GATEWAY, "host_unreachable"),
        "did not answer",
    )
    .await;
    clean("the console-log error", &msg);

    // A fault the agent reports in full is shown without paths or URLs.
    let fault = format!(
        "starting QEMU: creating {}/agent/instances/{sid}/disk.qcow2 from \
         http://127.0.0.1:9/v1/agent/images/x/file: No space left on device",
        cloud.dir.path().display()
    );
    let report = json!({"instances": [{
        "id": sid, "power": "error", "fault": fault, "reboot_generation": 0,
        "launched_at": null, "guest_shutdown": false,
    }]});
    let resp = cloud
        .agent_req(
            Method::PUT,
            &format!("/v1/agent/hosts/{}/report", id(&host)),
        )
        .json(&report)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "report: {}",
        resp.text().await.unwrap()
    );
    let shown = cloud.get_ok(&alice, &format!("/v1/servers/{sid}")).await;
    assert_eq!(shown["status"], "error", "{shown}");
    let shown_fault = shown["fault"].as_str().expect("a fault");
    clean("the server's fault", shown_fault);
    assert!(
        shown_fault.contains("No space left on device") && shown_fault.contains("<path>"),
        "the gist stays: {shown_fault}"
    );
}
