//! The web portal in a real (headless) Chromium: register, log in, launch
//! the tiny guest, watch the list update without a reload, console, stop,
//! delete; server-side errors on the form; CSRF refusal; other users' pages
//! are 404; an image upload with a progress bar. Screenshots of the main
//! pages go to `target/screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (scripts/install-deps.sh).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::browser::Browser;
use support::cloud::Cloud;
use support::netns::run_in_netns;

const BOOT: Duration = Duration::from_secs(180);

async fn register_and_login(b: &Browser, url: &str, name: &str, password: &str) {
    b.goto(&format!("{url}/register")).await;
    b.fill("#name", name).await;
    b.fill("#password", password).await;
    b.click("button[type=submit].primary").await;
    b.wait_text("Your account is ready", Duration::from_secs(10))
        .await;
    b.fill("#password", password).await;
    b.click("button[type=submit].primary").await;
    b.wait_text("Instances", Duration::from_secs(10)).await;
    assert!(b.url().await.ends_with("/servers"), "{}", b.url().await);
}

/// Logs in through the login page.
async fn login(b: &Browser, url: &str, name: &str, password: &str) {
    b.goto(&format!("{url}/login")).await;
    b.fill("#name", name).await;
    b.fill("#password", password).await;
    b.click("button[type=submit].primary").await;
    b.wait_text("Instances", Duration::from_secs(10)).await;
    assert!(b.url().await.ends_with("/servers"), "{}", b.url().await);
}

async fn logout(b: &Browser) {
    b.click("form.logout button").await;
    b.wait_text("You have logged out", Duration::from_secs(10))
        .await;
}

#[test]
fn portal_in_a_real_browser() {
    run_in_netns("portal", || async {
        let mut cloud = Cloud::start().await;
        let url = cloud.url.clone();
        let b = Browser::start(9515, 1280, 900).await;

        // Alice is the cloud's admin, made by its operator (`nubis admin
        // create-user --admin`): she logs in. Bob registers below.
        b.goto(&format!("{url}/")).await;
        b.wait_text("Log in", Duration::from_secs(10)).await;
        b.screenshot("login").await;
        let data_dir = cloud.data_path().to_string_lossy().into_owned();
        support::cloud::admin_create_user(
            &["--data-dir", &data_dir],
            "alice",
            "alice-password",
            true,
        );
        login(&b, &url, "alice", "alice-password").await;

        // The tiny guest comes in through the API (its kernel/initrd
        // wiring is not a portal feature).
        let (s, t) = cloud
            .call(
                Method::POST,
                "/v1/tokens",
                Some(json!({"name": "alice", "password": "alice-password"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        cloud.token = Some(t["token"].as_str().unwrap().to_owned());
        cloud.upload_tiny_image();

        // A form with bad values (HTML validation bypassed) shows the API's
        // error, with the values kept.
        b.goto(&format!("{url}/servers/new")).await;
        b.find("#launch").await;
        b.fill("#name", "bad-one").await;
        b.exec(
            "const f = document.getElementById('launch'); f.noValidate = true; \
             const s = document.getElementById('flavor'); s.value = 'custom'; \
             s.dispatchEvent(new Event('change')); \
             document.getElementById('vcpus').value = '0'; \
             document.getElementById('memory_mib').value = '128'; \
             document.getElementById('disk_gib').value = '1';",
            vec![],
        )
        .await;
        b.click("#launch button[type=submit]").await;
        b.wait_text(
            "vcpus must be between 1 and 64, got 0",
            Duration::from_secs(10),
        )
        .await;
        let kept = b
            .exec("return document.getElementById('name').value", vec![])
            .await;
        assert_eq!(kept, json!("bad-one"), "the form keeps its values");

        // Launch the tiny guest through the form.
        b.goto(&format!("{url}/servers/new")).await;
        b.find("#launch").await;
        b.screenshot("launch-form").await;
        b.fill("#name", "vm1").await;
        let picked = b
            .exec(
                "const s = document.getElementById('image'); \
                 for (const o of s.options) { if (o.text.includes('— tiny (')) { s.value = o.value; return o.value; } } \
                 return null;",
                vec![],
            )
            .await;
        assert!(picked.is_string(), "the tiny image is offered");
        b.exec(
            "document.getElementById('flavor').value = 'tiny'; \
             document.getElementById('flavor').dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
        b.click("#launch button[type=submit]").await;
        b.find(".toolbar[data-server]").await;
        let id = b
            .exec(
                "return document.querySelector('.toolbar').dataset.server",
                vec![],
            )
            .await
            .as_str()
            .expect("server id")
            .to_owned();

        // The list shows it running, with its address, without a reload.
        b.goto(&format!("{url}/servers")).await;
        b.find(&format!("tr[data-id='{id}']")).await;
        b.exec("window.__noReload = 'still here'", vec![]).await;
        let status_css = format!("tr[data-id='{id}'] [data-field=status]");
        support::wait_for("the list to show running", BOOT, || async {
            (b.text(&status_css).await == "running").then_some(())
        })
        .await;
        let server = cloud.wait_status(&id, "running", BOOT).await;
        let ip = server["addresses"][0]["ip"].as_str().unwrap().to_owned();
        let addr_css = format!("tr[data-id='{id}'] [data-field=address]");
        support::wait_for(
            "the list to show the address",
            Duration::from_secs(10),
            || async { (b.text(&addr_css).await == ip).then_some(()) },
        )
        .await;
        let dns = server["dns_name"].as_str().unwrap_or("").to_owned();
        assert!(b.body_text().await.contains(&dns), "DNS name {dns} shown");
        let marker = b.exec("return window.__noReload", vec![]).await;
        assert_eq!(marker, json!("still here"), "the page was not reloaded");
        b.screenshot("instances").await;
        b.set_size(390, 844).await;
        b.screenshot("instances-phone").await;
        b.set_size(1280, 900).await;

        // The detail page: actions, traffic, events, console log.
        b.goto(&format!("{url}/servers/{id}")).await;
        b.wait_text("Traffic this month", Duration::from_secs(10))
            .await;
        b.wait_text(&ip, Duration::from_secs(10)).await;
        b.screenshot("instance-detail").await;

        // CSRF: the same POST without (or with a wrong) token is refused.
        let cookie = b.get_cookie("nubis_session").await.expect("session cookie");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        for body in ["action=stop", "action=stop&_csrf=00"] {
            let r = http
                .post(format!("{url}/servers/{id}/action"))
                .header("Cookie", format!("nubis_session={cookie}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{body:?}");
        }
        let (_, still) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(still["status"], "running", "a refused POST changes nothing");

        // Console: the button asks the API for a single-use link and opens
        // the noVNC page, which draws the guest's screen.
        b.click("#console-button").await;
        let drawn = support::wait_for("the console canvas to show the screen", BOOT, || async {
            let v = b
                .exec(
                    "const c = document.querySelector('canvas'); \
                     if (!c || c.width < 100 || c.height < 100) return false; \
                     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
                     for (let i = 4; i < d.length; i += 4) { \
                       if (d[i] !== d[0] || d[i+1] !== d[1] || d[i+2] !== d[2]) return [c.width, c.height]; } \
                     return false;",
                    vec![],
                )
                .await;
            v.as_array().cloned()
        })
        .await;
        let now = b.url().await;
        assert!(now.contains("/console/"), "on the console page: {now}");
        assert!(
            !now.contains("token="),
            "the token left the address bar: {now}"
        );
        println!("console canvas {drawn:?} is drawn (not blank)");
        b.screenshot("console").await;

        // Upload a small raw image through the images page.
        let raw = cloud.data_path().join("small.raw");
        std::fs::write(&raw, vec![0u8; 4 << 20]).unwrap();
        b.goto(&format!("{url}/images")).await;
        b.fill("#img-name", "small-raw").await;
        b.fill("#img-os", "blank").await;
        b.fill("#img-version", "1").await;
        b.exec(
            "document.getElementById('img-format').value = 'raw'",
            vec![],
        )
        .await;
        b.send_keys("#img-file", &raw.to_string_lossy()).await;
        // Record the progress events the bar shows.
        b.exec(
            "window.__progress = []; const p = document.getElementById('img-progress'); \
             new MutationObserver(() => window.__progress.push(p.value)).observe(p, {attributes: true, childList: true});",
            vec![],
        )
        .await;
        b.click("#upload button[type=submit]").await;
        b.wait_text("uploaded and is ready", Duration::from_secs(60))
            .await;
        let (_, images) = cloud.call(Method::GET, "/v1/images", None).await;
        let small = images
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "small-raw")
            .cloned()
            .expect("the uploaded image");
        assert_eq!(small["status"], "active", "{small}");
        assert_eq!(small["size"], 4 << 20);
        b.wait_text("small-raw", Duration::from_secs(5)).await;
        b.screenshot("images").await;

        // Key pairs: generate one; the private key is offered once.
        b.goto(&format!("{url}/keypairs")).await;
        b.fill("#kp-name", "laptop").await;
        b.click("form[action='/keypairs'] button[type=submit]")
            .await;
        b.wait_text("Your new private key", Duration::from_secs(10))
            .await;
        let href = b
            .exec(
                "return document.getElementById('download-key').href",
                vec![],
            )
            .await;
        assert!(
            href.as_str()
                .unwrap_or("")
                .starts_with("data:application/x-pem-file;base64,"),
            "{href}"
        );
        b.screenshot("keypairs").await;
        b.goto(&format!("{url}/keypairs")).await;
        b.wait_text("laptop", Duration::from_secs(5)).await;
        assert!(
            !b.body_text().await.contains("Your new private key"),
            "shown once"
        );

        // Networks and the admin pages.
        b.goto(&format!("{url}/networks")).await;
        b.wait_text("default", Duration::from_secs(5)).await;
        b.screenshot("networks").await;
        b.goto(&format!("{url}/admin/hosts")).await;
        b.find("nav.tabs").await;
        let (_, hosts) = cloud.call(Method::GET, "/v1/hosts", None).await;
        let host = hosts[0]["name"].as_str().unwrap().to_owned();
        b.wait_text(&host, Duration::from_secs(5)).await;
        b.screenshot("admin-hosts").await;
        b.goto(&format!("{url}/admin/servers")).await;
        b.wait_text("vm1", Duration::from_secs(5)).await;

        // Another user sees neither alice's instance nor the admin pages.
        logout(&b).await;
        register_and_login(&b, &url, "bob", "bob-password").await;
        b.goto(&format!("{url}/servers/{id}")).await;
        b.wait_text("Not found", Duration::from_secs(5)).await;
        assert!(!b.body_text().await.contains(&ip));
        for path in ["/admin/hosts", "/admin/servers"] {
            b.goto(&format!("{url}{path}")).await;
            b.wait_text("There is no such page", Duration::from_secs(5))
                .await;
        }
        let bob = b.get_cookie("nubis_session").await.unwrap();
        let r = http
            .get(format!("{url}/servers/{id}"))
            .header("Cookie", format!("nubis_session={bob}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        logout(&b).await;

        // Back as alice: stop, then delete, with the buttons.
        b.fill("#name", "alice").await;
        b.fill("#password", "alice-password").await;
        b.click("button[type=submit].primary").await;
        b.wait_text("vm1", Duration::from_secs(10)).await;
        b.goto(&format!("{url}/servers/{id}")).await;
        b.click("form[action$='/action'] input[value=stop] + button")
            .await;
        b.wait_text("Stopping the instance", Duration::from_secs(10))
            .await;
        cloud.wait_status(&id, "stopped", BOOT).await;
        b.goto(&format!("{url}/servers/{id}")).await;
        b.click("form[action$='/action'] input[value=delete] + button")
            .await;
        b.wait_text("being deleted", Duration::from_secs(10)).await;
        support::wait_for("the server to be gone", BOOT, || async {
            let (s, _) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (s == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        // ...and the list drops it by itself.
        b.goto(&format!("{url}/servers")).await;
        support::wait_for("the list to drop vm1", Duration::from_secs(20), || async {
            b.try_find(&format!("tr[data-id='{id}']"))
                .await
                .is_none()
                .then_some(())
        })
        .await;
        b.quit().await;
        drop(b);
        cloud.kill9();
    });
}
