//! `make bench`: what the OpenStack compatibility layer costs, against the
//! same operations through `/v1`, in the same run, on the same controller.
//!
//! The hosts are SIMULATED (`crates/sim`: fake agents over the real agent
//! protocol, no QEMU), so the figures are the control plane's alone:
//! (a) create -> running: `POST /compute/v2.1/servers`, then
//!     `GET /compute/v2.1/servers/{id}` until `ACTIVE`, against
//!     `POST /v1/servers`, then `GET /v1/servers/{id}` until `running`
//!     (same image, flavor and network, alternating, median of
//!     NUBIS_BENCH_RUNS, 20);
//! (b) listing: with NUBIS_BENCH_LIST_SERVERS (1000) servers in the
//!     project, `GET /compute/v2.1/servers/detail` against `GET /v1/servers`
//!     (both one page of up to 1000), p50 and p99 of 100 each.
//! The time `openstack server create --wait` takes from the command line
//! is mostly the client's own start (Python); tests/openstack_*.rs run it.
//! Not a test: nothing here asserts a time.

#[path = "../crates/sim/tests/support/testbed.rs"]
mod testbed;

use nubis_sim::SimSettings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testbed::{env_size as env, percentile, Testbed};

const HOSTS: usize = 4;
/// Room for thousands of tiny servers on each host.
const HOST_SIZE: (u64, u64, u64) = (1024, 1 << 20, 8192);

fn main() {
    testbed::serve_if_child();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// A call on an OpenStack route (`X-Auth-Token`, as the clients send it).
async fn os_call(
    bed: &Testbed,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = bed
        .http
        .request(method, format!("{}{path}", bed.base))
        .header("X-Auth-Token", token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the controller answers");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn run() {
    let bed = Testbed::start_child(std::env::var("NUBIS_BENCH_DATABASE_URL").ok()).await;
    let mut fleet = bed
        .join_fleet("os", HOSTS, HOST_SIZE, HOSTS)
        .await
        .expect("simulated hosts join");
    fleet.start(SimSettings {
        heartbeat: Duration::from_secs(10),
        follow: true,
    });
    let admin = bed.admin("bench-admin").await;
    let (token, project) = bed.user("os-bench").await;
    let list_n = env("NUBIS_BENCH_LIST_SERVERS", 1000);
    let runs = env("NUBIS_BENCH_RUNS", 20);
    bed.allow_servers(&admin, &project, (list_n + 2 * runs + 10) as u64)
        .await;
    bed.image(&token, "disk").await;
    let a = bed
        .call(
            Method::POST,
            "/v1/networks",
            Some(&token),
            Some(json!({"name": "lan", "cidr": "10.90.0.0/16"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let network = a.body["id"].as_str().unwrap().to_owned();
    let image = bed
        .call(Method::GET, "/v1/images/disk", Some(&token), None)
        .await;
    let image = image.body["id"].as_str().expect("image id").to_owned();
    let (status, flavors) = os_call(&bed, Method::GET, "/compute/v2.1/flavors", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{flavors}");
    let flavor = flavors["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "tiny")
        .expect("the tiny flavor")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // (a) create -> running, alternating the two APIs.
    let (mut nova, mut v1) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let body = json!({"server": {"name": format!("os{i}"), "imageRef": image,
            "flavorRef": flavor, "networks": [{"uuid": network}]}});
        let (status, created) = os_call(
            &bed,
            Method::POST,
            "/compute/v2.1/servers",
            &token,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
        let id = created["server"]["id"].as_str().unwrap().to_owned();
        loop {
            let (_, s) = os_call(
                &bed,
                Method::GET,
                &format!("/compute/v2.1/servers/{id}"),
                &token,
                None,
            )
            .await;
            match s["server"]["status"].as_str() {
                Some("ACTIVE") => break,
                Some("ERROR") => panic!("server went to ERROR: {s}"),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        nova.push(t.elapsed());

        let t = Instant::now();
        let body = json!({"name": format!("v{i}"), "image": "disk", "flavor": "tiny",
            "networks": [{"network": "lan"}]});
        let a = bed
            .call(Method::POST, "/v1/servers", Some(&token), Some(body))
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        let id = a.body["id"].as_str().unwrap().to_owned();
        loop {
            let s = bed
                .call(
                    Method::GET,
                    &format!("/v1/servers/{id}"),
                    Some(&token),
                    None,
                )
                .await;
            match s.body["status"].as_str() {
                Some("running") => break,
                Some("error") => panic!("server went to error: {}", s.body),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        v1.push(t.elapsed());
    }
    let (n50, v50) = (ms(&nova, 50.0), ms(&v1, 50.0));
    println!(
        "(a) create -> running, median of {runs}: OpenStack {n50:.1} ms, /v1 {v50:.1} ms, ratio {:.2}",
        n50 / v50
    );

    // (b) listing one page of a project's servers.
    let have = 2 * runs;
    for i in have..list_n {
        let body = Testbed::server_body(&format!("l{i}"), "disk", Some("lan"));
        let a = bed
            .call(Method::POST, "/v1/servers", Some(&token), Some(body))
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    }
    let (mut nova, mut v1) = (Vec::new(), Vec::new());
    let mut counts = (0, 0);
    for _ in 0..100 {
        let t = Instant::now();
        let (status, page) = os_call(
            &bed,
            Method::GET,
            "/compute/v2.1/servers/detail?limit=1000",
            &token,
            None,
        )
        .await;
        nova.push(t.elapsed());
        assert_eq!(status, StatusCode::OK);
        counts.0 = page["servers"].as_array().map_or(0, Vec::len);
        let t = Instant::now();
        let a = bed
            .call(Method::GET, "/v1/servers?limit=1000", Some(&token), None)
            .await;
        v1.push(t.elapsed());
        assert_eq!(a.status, StatusCode::OK);
        counts.1 = a.body.as_array().map_or(0, Vec::len);
    }
    println!(
        "(b) one page ({} / {} servers): GET /compute/v2.1/servers/detail p50 {:.1} ms p99 {:.1} ms; GET /v1/servers p50 {:.1} ms p99 {:.1} ms",
        counts.0,
        counts.1,
        ms(&nova, 50.0),
        ms(&nova, 99.0),
        ms(&v1, 50.0),
        ms(&v1, 99.0),
    );
    drop(fleet);
}

/// The `p`th percentile of `samples`, in milliseconds.
fn ms(samples: &[Duration], p: f64) -> f64 {
    percentile(samples, p).as_secs_f64() * 1000.0
}
