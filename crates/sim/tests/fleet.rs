//! Simulated hosts against a real controller: 200 of them join with join
//! tokens over mutual TLS, servers created through `/v1/servers` become
//! `running` (their hosts followed the desired state and reported over the
//! real agent protocol) and are spread over distinct hosts. No VM boots.

mod support;

use nubis_sim::SimSettings;
use reqwest::{Method, StatusCode};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::testbed::Testbed;

const HOSTS: usize = 200;
const SERVERS: usize = 40;
/// 2 vCPUs, 4 GiB, 40 GiB: eight 1-vCPU/512 MiB/1 GiB servers each.
const SIZE: (u64, u64, u64) = (2, 4096, 40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_hosts_run_servers_spread_over_them() {
    let bed = Testbed::start(None).await;
    let mut fleet = bed
        .join_fleet("sim", HOSTS, SIZE, 16)
        .await
        .expect("hosts join");
    assert_eq!(fleet.hosts.len(), HOSTS);
    let ids: HashSet<_> = fleet.hosts.iter().map(|h| h.id).collect();
    assert_eq!(ids.len(), HOSTS, "each host has an id of its own");
    fleet.start(SimSettings {
        heartbeat: Duration::from_secs(5),
        follow: true,
    });

    let admin = bed.admin("root").await;
    let hosts = bed.call(Method::GET, "/v1/hosts", Some(&admin), None).await;
    assert_eq!(hosts.status, StatusCode::OK);
    let names: HashSet<&str> = hosts
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["name"].as_str())
        .filter(|n| n.starts_with("sim-"))
        .collect();
    assert_eq!(names.len(), HOSTS, "every simulated host is registered");

    let (token, project) = bed.user("alice").await;
    bed.allow_servers(&admin, &project, SERVERS as u64).await;
    bed.image(&token, "disk").await;
    let mut created = Vec::new();
    for i in 0..SERVERS {
        let body = Testbed::server_body(&format!("s{i}"), "disk", None);
        let a = bed
            .call(Method::POST, "/v1/servers", Some(&token), Some(body))
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        created.push(a.body["id"].as_str().unwrap().to_owned());
    }

    // Every server running, as its simulated host reported it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let servers = loop {
        let servers = bed.all_servers(&token, false).await;
        let running = servers.iter().filter(|s| s["status"] == "running").count();
        if running == SERVERS {
            break servers;
        }
        assert!(
            Instant::now() < deadline,
            "only {running} of {SERVERS} servers running: {:?}",
            servers.iter().map(|s| &s["status"]).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(servers.len(), SERVERS);
    for s in &servers {
        assert!(created.contains(&s["id"].as_str().unwrap().to_owned()));
        assert!(s["launched_at"].is_string(), "{s}");
    }

    // Spread: one server per host while empty hosts remain, and the
    // controller's view (host of each server) is the fleet's own.
    let placed: HashSet<&str> = servers.iter().filter_map(|s| s["host"].as_str()).collect();
    assert_eq!(placed.len(), SERVERS, "servers spread over distinct hosts");
    let running_hosts: Vec<_> = fleet
        .instance_counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(running_hosts.len(), SERVERS, "{running_hosts:?}");
    assert!(running_hosts.iter().all(|(_, n)| *n == 1));
    assert!(fleet.counters.reports() > 0 && fleet.counters.desired() > 0);

    // A stop goes through the fake hypervisor too.
    let first = &created[0];
    let a = bed
        .call(
            Method::POST,
            &format!("/v1/servers/{first}/stop"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = bed
            .call(
                Method::GET,
                &format!("/v1/servers/{first}"),
                Some(&token),
                None,
            )
            .await;
        if a.body["status"] == "stopped" {
            break;
        }
        assert!(Instant::now() < deadline, "not stopped: {}", a.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A simulated host needs a valid join token like any agent: a made-up or
/// spent one is refused, and a good one is accepted (positive control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_host_joins_only_with_a_valid_token() {
    let bed = Testbed::start(None).await;
    let token = bed.join_tokens(1).await.remove(0);
    let spec = |name: &str| nubis_sim::SimHostSpec {
        name: name.into(),
        vcpus: 1,
        memory_mib: 1024,
        disk_gib: 10,
    };
    let host = nubis_sim::SimHost::join(&bed.cluster_url, &token, &spec("sim-a"))
        .await
        .expect("a fresh token is accepted");
    assert_eq!(host.name, "sim-a");
    let again = nubis_sim::SimHost::join(&bed.cluster_url, &token, &spec("sim-b")).await;
    let e = format!("{:#}", again.err().expect("a spent token is refused"));
    assert!(e.contains("refused"), "{e}");
    // Same CA fingerprint, another secret.
    let (_, fingerprint) = token.rsplit_once('.').unwrap();
    let forged = format!("nubis-join.{}.{fingerprint}", "a".repeat(64));
    let e = nubis_sim::SimHost::join(&bed.cluster_url, &forged, &spec("sim-c"))
        .await
        .err()
        .expect("a made-up token is refused");
    assert!(format!("{e:#}").contains("refused"), "{e:#}");
}
