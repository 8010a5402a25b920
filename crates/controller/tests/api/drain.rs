//! Draining a host (`POST /v1/hosts/{id}/drain`, admin): the host is
//! disabled and each server on it starts moving off (running: live,
//! stopped: cold) or is reported as staying, with the reason; draining
//! again starts nothing twice; a down host is refused (evacuate it). The
//! hosts are the agent protocol's (joined with certificates, reporting by
//! hand); the moves themselves are the agents' (tests/live_migration.rs
//! drains a real host).

use super::hosts::quick_down_cloud;
use super::placement::{register_hosts, tenant};
use super::*;

fn small(name: &str) -> Value {
    json!({"name": name, "image": "disk", "vcpus": 1, "memory_mib": 128, "disk_gib": 1})
}

/// One instance of a host report.
fn seen(id: &str, power: &str, fault: Option<&str>) -> Value {
    json!({
        "id": id, "power": power, "fault": fault, "reboot_generation": 0,
        "launched_at": chrono::Utc::now(), "guest_shutdown": false,
    })
}

/// Reports `instances` as the host `host` (its own agent client).
async fn report(cloud: &Cloud, client: &reqwest::Client, host: &str, instances: Vec<Value>) {
    let resp = cloud
        .agent_req_as(
            client,
            Method::PUT,
            &format!("/v1/agent/hosts/{host}/report"),
        )
        .json(&json!({ "instances": instances }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

async fn create(cloud: &Cloud, token: &str, name: &str) -> String {
    let resp = cloud.post(Some(token), "/v1/servers", &small(name)).await;
    id(&ok_json(resp, StatusCode::ACCEPTED).await).to_owned()
}

async fn status(cloud: &Cloud, token: &str, server: &str) -> Value {
    cloud
        .get_ok(token, &format!("/v1/servers/{server}"))
        .await
        .clone()
}

/// `(server, field)` of each entry of a drain answer's list, sorted.
fn pairs(list: &Value, field: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["server"].as_str().unwrap().to_owned(),
                m[field].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The portal's session cookie for `token`.
fn cookie(token: &str) -> String {
    format!("nubis_session={token}")
}

/// A client that does not follow redirects (to see the portal's 303s).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The admin hosts page (`query`: `?done=...` or empty) as `token` sees it.
async fn hosts_page(cloud: &Cloud, token: &str, query: &str) -> reqwest::Response {
    no_redirects()
        .get(format!("{}/admin/hosts{query}", cloud.base))
        .header(reqwest::header::COOKIE, cookie(token))
        .send()
        .await
        .unwrap()
}

/// The CSRF token of a portal page.
fn csrf_of(html: &str) -> String {
    html.split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field")
        .to_owned()
}

/// Posts a host button's form (`action`: drain, evacuate, ...) as `token`.
async fn press(
    cloud: &Cloud,
    token: &str,
    host: &str,
    action: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    no_redirects()
        .post(format!("{}/admin/hosts/{host}/{action}", cloud.base))
        .header(reqwest::header::COOKIE, cookie(token))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(super::accounts::form_body(form))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn draining_disables_the_host_and_moves_each_server_off_once() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    let h1 = register_hosts(&cloud, 1).await.remove(0);
    let h1 = id(&h1).to_owned();
    let c1 = cloud.agent.lock().unwrap().clone().unwrap();
    // Four servers on h1: running, stopped, in error, still building.
    let run = create(&cloud, &alice, "run").await;
    let stop = create(&cloud, &alice, "stop").await;
    let broken = create(&cloud, &alice, "broken").await;
    let new = create(&cloud, &alice, "new").await;
    let resp = cloud
        .send(
            Method::POST,
            &format!("/v1/servers/{stop}/stop"),
            Some(&alice),
        )
        .await;
    assert!(resp.status().is_success(), "stop: {}", resp.status());
    report(
        &cloud,
        &c1,
        &h1,
        vec![
            seen(&run, "running", None),
            seen(&stop, "stopped", None),
            seen(&broken, "error", Some("disk missing")),
        ],
    )
    .await;
    for (server, want) in [
        (&run, "running"),
        (&stop, "stopped"),
        (&broken, "error"),
        (&new, "building"),
    ] {
        assert_eq!(status(&cloud, &alice, server).await["status"], want);
    }
    // A second host to move to.
    let mut body = host_body();
    body["name"] = json!("h2");
    body["url"] = json!("https://127.0.0.2:9");
    let (h2, _) = cloud.join(&body).await;
    let h2 = id(&h2).to_owned();
    let drain = format!("/v1/hosts/{h1}/drain");

    // Tenants may not; an unknown host is 404; a bad reason changes nothing.
    let resp = cloud.send(Method::POST, &drain, Some(&alice)).await;
    assert_error("tenant", resp, FORBIDDEN, "admin").await;
    let unknown = format!("/v1/hosts/{}/drain", nubis_api::HostId::new());
    let resp = cloud.send(Method::POST, &unknown, Some(&admin)).await;
    assert_error("unknown host", resp, NOT_FOUND, "host not found").await;
    let resp = cloud
        .post(Some(&admin), &drain, &json!({"reason": "x".repeat(256)}))
        .await;
    assert_error("long reason", resp, BAD, "255").await;
    let resp = cloud
        .post(Some(&admin), &drain, &json!({"why": "typo"}))
        .await;
    assert_error("unknown field", resp, INVALID, "unknown field").await;
    let host = cloud.get_ok(&admin, &format!("/v1/hosts/{h1}")).await;
    assert_eq!(host["enabled"], true, "nothing changed: {host}");
    assert_eq!(status(&cloud, &alice, &run).await["host"], h1.as_str());

    // Positive control: the admin drains h1.
    let resp = cloud
        .post(Some(&admin), &drain, &json!({"reason": "RAM swap"}))
        .await;
    let done = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(
        (
            done["host"]["enabled"].clone(),
            done["host"]["disabled_reason"].clone()
        ),
        (json!(false), json!("RAM swap")),
        "{done}"
    );
    let mut want = vec![(run.clone(), "live".into()), (stop.clone(), "cold".into())];
    want.sort();
    assert_eq!(pairs(&done["started"], "kind"), want, "{done}");
    for m in done["started"].as_array().unwrap() {
        assert_eq!(
            (m["source_host"].as_str(), m["target_host"].as_str()),
            (Some(h1.as_str()), Some(h2.as_str()))
        );
        assert_eq!(m["state"], "running");
    }
    assert_eq!(done["moving"], json!([]), "{done}");
    let skipped = pairs(&done["skipped"], "reason");
    assert_eq!(skipped.len(), 2, "{done}");
    for (server, reason) in &skipped {
        if *server == broken {
            assert!(reason.contains("in error (disk missing)"), "{reason}");
        } else {
            assert_eq!(*server, new);
            assert!(reason.contains("building"), "{reason}");
        }
    }
    // The servers are placed on h2 now, with the usual `migrating` event.
    for server in [&run, &stop] {
        assert_eq!(status(&cloud, &alice, server).await["host"], h2.as_str());
        let events = cloud
            .get_ok(&alice, &format!("/v1/servers/{server}/events"))
            .await;
        assert!(
            events
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "migrating"),
            "{events}"
        );
    }
    // h1 takes no new servers; h2 does.
    let other = create(&cloud, &alice, "other").await;
    assert_eq!(status(&cloud, &alice, &other).await["host"], h2.as_str());

    // Again (no body): nothing starts twice; the moves under way are
    // reported, the reason stays.
    let resp = cloud.send(Method::POST, &drain, Some(&admin)).await;
    let again = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(again["started"], json!([]), "{again}");
    assert_eq!(pairs(&again["moving"], "id"), pairs(&done["started"], "id"));
    assert_eq!(pairs(&again["skipped"], "reason"), skipped);
    assert_eq!(again["host"]["disabled_reason"], "RAM swap");
    let moves = cloud
        .get_ok(&alice, &format!("/v1/servers/{run}/migrations"))
        .await;
    assert_eq!(moves.as_array().unwrap().len(), 1, "{moves}");
    // An admin follows them (`host drain --wait` does); another tenant
    // sees nothing.
    let path = format!("/v1/servers/{run}/migrations");
    assert_eq!(cloud.get_ok(&admin, &path).await, moves);
    let bob = cloud.user("bob").await;
    let resp = cloud.get(&bob, &path).await;
    assert_error("bob", resp, NOT_FOUND, "server not found").await;
}

#[tokio::test]
async fn a_down_host_is_not_drained_and_a_lone_one_keeps_its_servers() {
    let cloud = quick_down_cloud().await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    let h1 = register_hosts(&cloud, 1).await.remove(0);
    let h1 = id(&h1).to_owned();
    let c1 = cloud.agent.lock().unwrap().clone().unwrap();
    let run = create(&cloud, &alice, "run").await;
    report(&cloud, &c1, &h1, vec![seen(&run, "running", None)]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drain = format!("/v1/hosts/{h1}/drain");
    let resp = cloud.send(Method::POST, &drain, Some(&admin)).await;
    assert_error("down host", resp, CONFLICT, "evacuate").await;
    let host = cloud.get_ok(&admin, &format!("/v1/hosts/{h1}")).await;
    assert_eq!(
        (host["state"].clone(), host["enabled"].clone()),
        (json!("down"), json!(true)),
        "a refused drain changes nothing: {host}"
    );
    // The portal offers Evacuate instead, which says the server has nowhere
    // to go.
    let html = hosts_page(&cloud, &admin, "").await.text().await.unwrap();
    assert!(
        html.contains(">Evacuate<") && !html.contains(">Drain<"),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let resp = press(&cloud, &admin, &h1, "evacuate", &[("_csrf", &csrf)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()[reqwest::header::LOCATION],
        "/admin/hosts?done=evacuated&started=0&moving=0&stay=1"
    );
    // Positive control: up again (a report), the host is drained: disabled
    // with the default reason; its server has nowhere to go and stays.
    report(&cloud, &c1, &h1, vec![seen(&run, "running", None)]).await;
    let resp = cloud.send(Method::POST, &drain, Some(&admin)).await;
    let done = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(done["host"]["disabled_reason"], "draining", "{done}");
    assert_eq!(done["started"], json!([]), "{done}");
    assert_eq!(done["skipped"][0]["server"], run.as_str(), "{done}");
    assert!(
        done["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no other host is up"),
        "{done}"
    );
    assert_eq!(status(&cloud, &alice, &run).await["host"], h1.as_str());
}

#[tokio::test]
async fn the_portal_drains_a_host_through_the_api() {
    use reqwest::header::LOCATION;
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    let h1 = register_hosts(&cloud, 1).await.remove(0);
    let h1 = id(&h1).to_owned();
    let c1 = cloud.agent.lock().unwrap().clone().unwrap();
    let run = create(&cloud, &alice, "run").await;
    report(&cloud, &c1, &h1, vec![seen(&run, "running", None)]).await;
    let mut body = host_body();
    body["name"] = json!("h2");
    body["url"] = json!("https://127.0.0.2:9");
    cloud.join(&body).await;
    let html = hosts_page(&cloud, &admin, "").await.text().await.unwrap();
    assert!(html.contains(">Drain<"), "a Drain button: {html}");
    assert!(!html.contains(">Evacuate<"), "no host is down: {html}");
    let csrf = csrf_of(&html);
    // A tenant gets 404; without the page's CSRF token nothing changes.
    let resp = press(&cloud, &alice, &h1, "drain", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = press(&cloud, &admin, &h1, "drain", &[]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let host = cloud.get_ok(&admin, &format!("/v1/hosts/{h1}")).await;
    assert_eq!(host["enabled"], true, "{host}");
    // Positive control: with it, the host is drained.
    let resp = press(&cloud, &admin, &h1, "drain", &[("_csrf", &csrf)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let to = resp.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(to, "/admin/hosts?done=drained&started=1&moving=0&stay=0");
    let host = cloud.get_ok(&admin, &format!("/v1/hosts/{h1}")).await;
    assert_eq!(
        (host["enabled"].clone(), host["disabled_reason"].clone()),
        (json!(false), json!("draining"))
    );
    let moves = cloud
        .get_ok(&alice, &format!("/v1/servers/{run}/migrations"))
        .await;
    assert_eq!(moves[0]["kind"], "live", "{moves}");
    let query = to.trim_start_matches("/admin/hosts");
    let html = hosts_page(&cloud, &admin, query)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("being drained: 1 started moving, 0 already moving, 0 stay"),
        "{html}"
    );
}

/// Polls `check` until it holds (at most 30 s).
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 30 s");
}

/// The generation of the departure of `server` in host `host`'s desired
/// state (what its agent reports moves for).
async fn departure_generation(
    cloud: &Cloud,
    client: &reqwest::Client,
    host: &str,
    server: &str,
) -> u64 {
    let resp = cloud
        .agent_req_as(
            client,
            Method::GET,
            &format!("/v1/agent/hosts/{host}/desired"),
        )
        .send()
        .await
        .unwrap();
    let desired = ok_json(resp, StatusCode::OK).await;
    desired["departures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == server)
        .and_then(|d| d["generation"].as_u64())
        .unwrap_or_else(|| panic!("no departure of {server}: {desired}"))
}

/// Reports, as the source `host`, how the live departure of `server` ended.
async fn departure_ends(
    cloud: &Cloud,
    client: &reqwest::Client,
    host: &str,
    server: &str,
    outcome: Result<u64, &str>,
) {
    let generation = departure_generation(cloud, client, host, server).await;
    let mut step = json!({"id": server, "generation": generation, "role": "departure"});
    match outcome {
        Ok(downtime_ms) => {
            step["progress"] = json!("arrived");
            step["downtime_ms"] = json!(downtime_ms);
        }
        Err(error) => {
            step["progress"] = json!("failed");
            step["error"] = json!(error);
        }
    }
    let resp = cloud
        .agent_req_as(
            client,
            Method::PUT,
            &format!("/v1/agent/hosts/{host}/report"),
        )
        .json(&json!({"instances": [], "moves": [step]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

/// `nubis host drain --wait` (the CLI's own code, against this controller):
/// it follows the moves to their end, fails naming a move that failed (and
/// not one that succeeded), and succeeds once the host is empty.
#[tokio::test]
async fn drain_wait_follows_the_moves_and_names_a_failed_one() {
    use nubis_api::hosts::HostSummary;
    use nubis_cli::client::ApiClient;
    use nubis_cli::commands::drain::drain;
    let cloud = Cloud::start().await;
    let admin = cloud.admin("root").await;
    let alice = tenant(&cloud, "alice").await;
    let h1 = register_hosts(&cloud, 1).await.remove(0);
    let h1 = id(&h1).to_owned();
    let c1 = cloud.agent.lock().unwrap().clone().unwrap();
    let fails = create(&cloud, &alice, "fails").await;
    let moves = create(&cloud, &alice, "moves").await;
    let running = || vec![seen(&fails, "running", None), seen(&moves, "running", None)];
    report(&cloud, &c1, &h1, running()).await;
    let mut body = host_body();
    body["name"] = json!("h2");
    body["url"] = json!("https://127.0.0.2:9");
    cloud.join(&body).await;
    let client = ApiClient::with_token(&cloud.base, &admin).unwrap();
    let host: HostSummary = client.get(&format!("/v1/hosts/{h1}")).await.unwrap();

    let wait = {
        let (client, host) = (
            ApiClient::with_token(&cloud.base, &admin).unwrap(),
            host.clone(),
        );
        tokio::spawn(async move { drain(&client, &host, None, true, false).await })
    };
    // Both start moving live; one fails, the other arrives.
    for server in [&fails, &moves] {
        let path = format!("/v1/servers/{server}/migrations");
        eventually(|| async { cloud.get_ok(&admin, &path).await.as_array().unwrap().len() == 1 })
            .await;
    }
    departure_ends(&cloud, &c1, &h1, &fails, Err("QEMU said no")).await;
    departure_ends(&cloud, &c1, &h1, &moves, Ok(120)).await;
    let err = tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the wait ends")
        .unwrap()
        .expect_err("a move failed");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "the live migration of server {fails} to host h2 failed: QEMU said no"
        )),
        "{message}"
    );
    assert!(!message.contains(moves.as_str()), "{message}");

    // Positive control: drained again, the one left moves and the wait ends
    // with the host empty.
    report(&cloud, &c1, &h1, vec![seen(&fails, "running", None)]).await;
    let wait = tokio::spawn(async move { drain(&client, &host, None, true, false).await });
    let path = format!("/v1/servers/{fails}/migrations");
    eventually(|| async { cloud.get_ok(&admin, &path).await.as_array().unwrap().len() == 2 }).await;
    departure_ends(&cloud, &c1, &h1, &fails, Ok(80)).await;
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the wait ends")
        .unwrap()
        .expect("the host is drained");
    let host = cloud.get_ok(&admin, &format!("/v1/hosts/{h1}")).await;
    assert_eq!(host["instances"], 0, "{host}");
}
