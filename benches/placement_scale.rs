//! `make bench`: the control plane at scale, with SIMULATED hosts
//! (`crates/sim`: fake agents over the real agent protocol, no QEMU).
//!
//! (a) Placement: a real controller in a child process (SQLite; PostgreSQL with
//!     `NUBIS_BENCH_DATABASE_URL` naming an empty database), 10,000 simulated hosts joined with join
//!     tokens over mutual TLS, 50 concurrent clients (one project each)
//!     calling `POST /v1/servers`. Prints placements per second, latency
//!     percentiles, refusals by status, then the number of overbooked hosts
//!     read back through the API (must be 0). Target: >= 1,000/s.
//! (b) Listing: one project with 10,000 servers (on a fleet of its own,
//!     100 hosts, filled through the API too), then `GET /v1/servers`: p50 /
//!     p99 of a default page (1000 servers) and of a full listing (every
//!     page through `X-Next-Marker`). Target: p99 < 50 ms for a page.
//!
//! Sizes: NUBIS_BENCH_HOSTS (10000), NUBIS_BENCH_CLIENTS (50),
//! NUBIS_BENCH_PLACEMENTS (10000), NUBIS_BENCH_SECONDS (a cap on the
//! placement phase, 300), NUBIS_BENCH_LIST_SERVERS (10000),
//! NUBIS_BENCH_FOLLOW (1: hosts long-poll their desired state during the
//! placement phase, as agents do; 0: they only heartbeat),
//! NUBIS_BENCH_PHASES (`placement,list`). Not a test: nothing here asserts
//! a time; it fails only if something is refused that must not be, or a
//! host is overbooked.

#[path = "../crates/sim/tests/support/testbed.rs"]
mod testbed;

use nubis_sim::SimSettings;
use reqwest::{Method, StatusCode};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testbed::{env_size as env, overbooked_hosts, percentile, Testbed};

/// A placement host: 2 vCPUs (8 servers at cpu 4.0), 4 GiB, 40 GiB: tight
/// enough that racing creates landing on one host would overbook it.
const HOST_SIZE: (u64, u64, u64) = (2, 4096, 40);
/// A listing host: room for 128 servers.
const LIST_HOST_SIZE: (u64, u64, u64) = (32, 65536, 256);
const LIST_HOSTS: usize = 100;
const JOIN_CONCURRENCY: usize = 64;

fn main() {
    raise_open_files_limit();
    // The controller runs in a child process of this executable: the
    // fleet's connections (one per host on each side) fit each process's
    // open-files limit, and the figures include a real process boundary.
    testbed::serve_if_child();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let phases = std::env::var("NUBIS_BENCH_PHASES").unwrap_or("placement,list".into());
    let database = std::env::var("NUBIS_BENCH_DATABASE_URL").ok();
    runtime.block_on(async {
        println!(
            "placement_scale: database {}",
            if database.is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            }
        );
        if phases.contains("placement") {
            placement(database.clone()).await;
        }
        if phases.contains("list") {
            listing(database).await;
        }
    });
}

/// Up to 10,000 hosts each hold one TLS connection (two descriptors in this
/// process, which also runs the controller).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let want = libc::rlimit {
            rlim_cur: 200_000,
            rlim_max: limit.rlim_max.max(200_000),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

async fn placement(database: Option<String>) {
    let hosts = env("NUBIS_BENCH_HOSTS", 10_000);
    let clients = env("NUBIS_BENCH_CLIENTS", 50);
    let total = env("NUBIS_BENCH_PLACEMENTS", 10_000);
    let cap = Duration::from_secs(env("NUBIS_BENCH_SECONDS", 300) as u64);
    let follow = env("NUBIS_BENCH_FOLLOW", 1) == 1;
    let bed = Testbed::start_child(database).await;
    let started = Instant::now();
    let mut fleet = bed
        .join_fleet("place", hosts, HOST_SIZE, JOIN_CONCURRENCY)
        .await
        .expect("simulated hosts join");
    let joined = started.elapsed();
    println!(
        "(a) {hosts} simulated hosts joined over mutual TLS in {:.1} s ({:.0} joins/s)",
        joined.as_secs_f64(),
        hosts as f64 / joined.as_secs_f64()
    );
    let admin = bed.admin("bench-admin-a").await;
    let mut tokens = Vec::new();
    for c in 0..clients {
        let (token, project) = bed.user(&format!("client{c}")).await;
        bed.allow_servers(&admin, &project, total.div_ceil(clients) as u64 + 1)
            .await;
        bed.image(&token, "disk").await;
        tokens.push(token);
    }
    // Heartbeats from here on (the projects are set up first: 10,000 hosts
    // reporting every 10 s are a load of their own).
    fleet.start(SimSettings {
        heartbeat: Duration::from_secs(10),
        follow,
    });
    let bed = Arc::new(bed);
    let next = Arc::new(AtomicUsize::new(0));
    let before = (fleet.counters.desired(), fleet.counters.reports());
    let started = Instant::now();
    let mut workers = Vec::new();
    for token in tokens {
        let (bed, next) = (bed.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || started.elapsed() > cap {
                    return samples;
                }
                let body = Testbed::server_body(&format!("s{i}"), "disk", None);
                let t = Instant::now();
                let a = bed
                    .call(Method::POST, "/v1/servers", Some(&token), Some(body))
                    .await;
                samples.push((a.status, t.elapsed()));
            }
        }));
    }
    let mut samples = Vec::new();
    for w in workers {
        samples.extend(w.await.unwrap());
    }
    let wall = started.elapsed();
    let accepted: Vec<Duration> = samples
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, d)| *d)
        .collect();
    let mut refused: BTreeMap<u16, usize> = BTreeMap::new();
    for (s, _) in samples.iter().filter(|(s, _)| *s != StatusCode::ACCEPTED) {
        *refused.entry(s.as_u16()).or_default() += 1;
    }
    println!(
        "(a) {} placements accepted of {} asked in {:.1} s by {clients} clients: {:.0} placements/s (target >= 1000){}",
        accepted.len(),
        samples.len(),
        wall.as_secs_f64(),
        accepted.len() as f64 / wall.as_secs_f64(),
        if samples.len() < total { " [stopped at the time cap]" } else { "" }
    );
    print_latency("(a) POST /v1/servers", &accepted);
    println!("(a) refused by status: {refused:?}");
    println!(
        "(a) agent protocol meanwhile: {} desired-state answers, {} reports (hosts long-poll: {follow})",
        fleet.counters.desired() - before.0,
        fleet.counters.reports() - before.1
    );
    let servers = bed.all_servers(&admin, true).await;
    let overbooked = overbooked_hosts(&servers, HOST_SIZE);
    println!(
        "(a) overbooked hosts: {overbooked} (of {hosts}; {} servers read back)",
        servers.len()
    );
    drop(fleet);
    assert_eq!(overbooked, 0, "hosts were overbooked");
}

async fn listing(database: Option<String>) {
    let n = env("NUBIS_BENCH_LIST_SERVERS", 10_000);
    let clients = env("NUBIS_BENCH_CLIENTS", 50);
    let bed = Testbed::start_child(database).await;
    // Hosts heartbeat while the project fills; they follow their desired
    // state afterwards (while revisions are global, every create would
    // send all of them fetching it again).
    let mut fleet = bed
        .join_fleet("list", LIST_HOSTS, LIST_HOST_SIZE, JOIN_CONCURRENCY)
        .await
        .expect("simulated hosts join");
    fleet.start(SimSettings {
        heartbeat: Duration::from_secs(10),
        follow: false,
    });
    let admin = bed.admin("bench-admin-b").await;
    let (token, project) = bed.user("lister").await;
    bed.allow_servers(&admin, &project, n as u64).await;
    bed.image(&token, "disk").await;
    let a = bed
        .call(
            Method::POST,
            "/v1/networks",
            Some(&token),
            Some(serde_json::json!({"name": "big", "cidr": "10.80.0.0/16"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let bed = Arc::new(bed);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (bed, next, token) = (bed.clone(), next.clone(), token.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let body = Testbed::server_body(&format!("l{i}"), "disk", Some("big"));
                let a = bed
                    .call(Method::POST, "/v1/servers", Some(&token), Some(body))
                    .await;
                assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    println!(
        "(b) {n} servers created in one project in {:.1} s ({LIST_HOSTS} hosts, {clients} clients)",
        started.elapsed().as_secs_f64(),
    );
    fleet.follow();
    let started = Instant::now();
    loop {
        let running = bed
            .all_servers(&token, false)
            .await
            .iter()
            .filter(|s| s["status"] == "running")
            .count();
        if running == n || started.elapsed() > Duration::from_secs(600) {
            println!(
                "(b) {running} of {n} running {:.1} s after the hosts began to follow",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let runs = env("NUBIS_BENCH_LIST_RUNS", 200);
    let mut page = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let a = bed
            .call(Method::GET, "/v1/servers", Some(&token), None)
            .await;
        page.push(t.elapsed());
        assert_eq!(a.status, StatusCode::OK);
        bytes = a.body.to_string().len();
        assert!(a.headers.contains_key("x-next-marker") || n <= 1000);
    }
    print_latency(
        &format!(
            "(b) GET /v1/servers, default page (1000 servers, {} KiB)",
            bytes / 1024
        ),
        &page,
    );
    let mut full = Vec::new();
    for _ in 0..(runs / 10).max(5) {
        let t = Instant::now();
        let all = bed.all_servers(&token, false).await;
        full.push(t.elapsed());
        assert_eq!(all.len(), n);
    }
    print_latency(
        &format!("(b) full listing ({n} servers, {} pages)", n.div_ceil(1000)),
        &full,
    );
    let page_p99 = percentile(&page, 99.0);
    println!(
        "(b) page p99 {:.1} ms (target < 50 ms): {}",
        ms(page_p99),
        if page_p99 < Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_latency(what: &str, samples: &[Duration]) {
    println!(
        "{what}: n={} p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        ms(percentile(samples, 50.0)),
        ms(percentile(samples, 90.0)),
        ms(percentile(samples, 99.0)),
        ms(percentile(samples, 100.0)),
    );
}
