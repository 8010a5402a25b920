//! Networks across hosts, end to end: a controller and three agents, each
//! in its own network namespace ("host"), joined by an underlay bridge
//! (tests/support/multihost.rs).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::multihost::{self, Options};

const BOOT: Duration = Duration::from_secs(240);

/// The harness itself: three hosts join and register, each reaches the
/// others over the underlay, and a server boots on one of them (its
/// console log comes from that host's agent through the controller).
#[test]
fn three_hosts_join_and_run_a_server() {
    multihost::run("mh-smoke", Options::hosts(3), |mut cloud| async move {
        cloud.create_admin_and_login("root", "root-password").await;
        let (s, hosts) = cloud.call(Method::GET, "/v1/hosts", None).await;
        assert_eq!(s, StatusCode::OK, "{hosts}");
        let names: Vec<&str> = hosts
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["name"].as_str())
            .collect();
        for i in 0..3 {
            assert!(names.contains(&multihost::host_name(i).as_str()), "{hosts}");
        }
        // The underlay joins the hosts (positive control for later checks).
        let out = cloud.run_on(0, "ping", &["-c", "1", "-W", "2", "172.31.0.13"]);
        assert!(out.status.success(), "host-0 cannot ping host-2");

        cloud.upload_tiny_image();
        let (id, _) = cloud
            .create_server(json!({"name": "s1", "image": "tiny", "flavor": "tiny"}))
            .await;
        cloud.wait_status(&id, "running", BOOT).await;
        cloud.wait_console(&id, "boot-count: 1", BOOT).await;
        let placed = cloud.host_of(&id).await.expect("placed on a host");
        assert_eq!(cloud.host_holding(&id), Some(placed));
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        support::wait_for("the delete", BOOT, || async {
            let (s, _) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (s == StatusCode::NOT_FOUND && cloud.host_holding(&id).is_none()).then_some(())
        })
        .await;
    });
}

/// The id of a network created by the logged-in user.
async fn network(cloud: &multihost::MultiHost, name: &str, cidr: &str) -> String {
    let (s, net) = cloud
        .call(
            Method::POST,
            "/v1/networks",
            Some(json!({"name": name, "cidr": cidr})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{net}");
    net["id"].as_str().unwrap().to_owned()
}

/// `nvx-` + the first 8 hex digits of a network id (the agent's naming).
fn vxlan_device(network_id: &str) -> String {
    format!("nvx-{}", &network_id.replace('-', "")[..8])
}

/// A host's links (names).
fn links(cloud: &multihost::MultiHost, i: usize) -> String {
    String::from_utf8_lossy(&cloud.run_on(i, "ip", &["-o", "link", "show"]).stdout).into_owned()
}

/// Two servers of alice's network on different hosts ping each other over
/// VXLAN; bob's server on his own network reaches neither (while it reaches
/// its own gateway); only the hosts with ports on a network get its VXLAN
/// device, each sending only to the other hosts that have it; names of
/// servers on other hosts resolve; a peer that leaves is removed.
#[test]
fn servers_of_one_network_on_different_hosts_reach_each_other_over_vxlan() {
    multihost::run("mh-vxlan", Options::hosts(3), |mut cloud| async move {
        // alice: network lan with a1; bob: network blan with b1; then a2.
        // Spread placement puts each on the least loaded host.
        cloud
            .create_user_and_login("alice", "alice-password", false)
            .await;
        cloud.upload_tiny_image();
        let ka = cloud.keypair("ka").await;
        let lan = network(&cloud, "lan", "10.81.0.0/24").await;
        let (a1, _) = cloud
            .create_server(json!({"name": "a1", "image": "tiny", "flavor": "tiny",
                "key_name": "ka", "networks": [{"network": "lan", "fixed_ip": "10.81.0.11"}]}))
            .await;
        cloud
            .create_user_and_login("bob", "bob-password", false)
            .await;
        cloud.upload_tiny_image();
        let kb = cloud.keypair("kb").await;
        network(&cloud, "blan", "10.82.0.0/24").await;
        let (b1, _) = cloud
            .create_server(json!({"name": "b1", "image": "tiny", "flavor": "tiny",
                "key_name": "kb", "networks": [{"network": "blan", "fixed_ip": "10.82.0.21"}]}))
            .await;
        cloud.login("alice", "alice-password").await;
        let (a2, _) = cloud
            .create_server(json!({"name": "a2", "image": "tiny", "flavor": "tiny",
                "key_name": "ka", "networks": [{"network": "lan", "fixed_ip": "10.81.0.12"}]}))
            .await;

        for id in [&a1, &a2] {
            cloud.wait_status(id, "running", BOOT).await;
        }
        let (h1, h2) = (
            cloud.host_holding(&a1).expect("a1 is on a host"),
            cloud.host_holding(&a2).expect("a2 is on a host"),
        );
        assert_ne!(h1, h2, "spread placement puts a1 and a2 on different hosts");
        for id in [&a1, &a2] {
            cloud.wait_console(id, "nubis-tiny: sshd ready", BOOT).await;
        }

        // Positive control: over VXLAN, each reaches the other (the FDB
        // may take a converge pass to follow the second server).
        let mut last = None;
        for _ in 0..20 {
            let out = cloud.ssh(h1, &ka, "10.81.0.11", "ping -c 2 -W 2 10.81.0.12");
            if out.status.success() {
                last = None;
                break;
            }
            last = Some(out);
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        if let Some(out) = last {
            let neigh = cloud.ssh(h1, &ka, "10.81.0.11", "ip neigh; ip addr; ip route");
            panic!(
                "a1 cannot ping a2 across hosts: {out:?}\n{neigh:?}\n{}",
                diagnose(&cloud, &[h1, h2])
            );
        }
        let back = cloud.ssh(h2, &ka, "10.81.0.12", "ping -c 2 -W 2 10.81.0.11");
        assert!(back.status.success(), "a2 cannot ping a1: {back:?}");
        // DNS on a1's host names a2, which runs on another host.
        let lookup = cloud.ssh(h1, &ka, "10.81.0.11", "nslookup a2.alice.nubis.internal");
        assert!(
            String::from_utf8_lossy(&lookup.stdout).contains("10.81.0.12"),
            "{lookup:?}"
        );

        // Only hosts with lan's ports have its device; each sends only to
        // the other (unicast, no flooding to the third host).
        let device = vxlan_device(&lan);
        let third = (0..3).find(|i| *i != h1 && *i != h2).unwrap();
        assert!(links(&cloud, h1).contains(&device), "{}", links(&cloud, h1));
        assert!(links(&cloud, h2).contains(&device));
        assert!(
            !links(&cloud, third).contains(&device),
            "{}",
            links(&cloud, third)
        );
        let fdb = cloud.run_on(h1, "bridge", &["fdb", "show", "dev", &device]);
        let fdb = String::from_utf8_lossy(&fdb.stdout).into_owned();
        assert!(
            fdb.contains(&format!("dst {}", multihost::host_ip(h2))),
            "{fdb}"
        );
        assert!(
            !fdb.contains(&format!("dst {}", multihost::host_ip(third))),
            "{fdb}"
        );
        // Guests are told the MTU that leaves room for VXLAN's headers.
        let conf = std::fs::read_to_string(
            cloud.hosts[h1]
                .agent_dir()
                .join("networks")
                .join(&lan)
                .join("dnsmasq.conf"),
        )
        .unwrap();
        assert!(conf.contains("dhcp-option-force=option:mtu,1450"), "{conf}");

        // Bob's server, on another project's network, reaches neither of
        // alice's servers (ICMP is open to anyone in alice's default group),
        // while its own gateway answers it.
        cloud.login("bob", "bob-password").await;
        cloud.wait_status(&b1, "running", BOOT).await;
        cloud
            .wait_console(&b1, "nubis-tiny: sshd ready", BOOT)
            .await;
        let hb = cloud.host_holding(&b1).expect("b1 is on a host");
        let own = cloud.ssh(hb, &kb, "10.82.0.21", "ping -c 2 -W 2 10.82.0.1");
        assert!(own.status.success(), "b1 cannot ping its gateway: {own:?}");
        for ip in ["10.81.0.11", "10.81.0.12"] {
            let out = cloud.ssh(hb, &kb, "10.82.0.21", &format!("ping -c 2 -W 2 {ip}"));
            assert!(
                out.status.code() == Some(1),
                "b1 must not reach alice's {ip} (ping exits 1 when unanswered): {out:?}"
            );
        }

        // A peer that leaves is removed: without a2, lan stays on a1's host.
        cloud.login("alice", "alice-password").await;
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{a2}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        support::wait_for("a1's host to drop lan's VXLAN device", BOOT, || async {
            (!links(&cloud, h1).contains(&device)).then_some(())
        })
        .await;
        // Positive control: a1 still reaches its gateway.
        let gw = cloud.ssh(h1, &ka, "10.81.0.11", "ping -c 2 -W 2 10.81.0.1");
        assert!(gw.status.success(), "{gw:?}");
    });
}

/// What the hosts have, for failure messages.
fn diagnose(cloud: &multihost::MultiHost, hosts: &[usize]) -> String {
    let mut out = String::new();
    for &i in hosts {
        for (prog, args) in [
            ("ip", vec!["-d", "link", "show"]),
            ("ip", vec!["addr"]),
            ("bridge", vec!["fdb", "show"]),
            ("nft", vec!["list", "ruleset"]),
        ] {
            let o = cloud.run_on(i, prog, &args);
            out.push_str(&format!(
                "== host {i}: {prog} {args:?}\n{}{}\n",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        let log = cloud.hosts[i].log();
        let interesting: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("WARN")
                    || l.contains("ERROR")
                    || l.contains("VXLAN")
                    || l.contains("tunnel")
            })
            .collect();
        out.push_str(&format!(
            "== host {i} agent log\n{}\n",
            interesting.join("\n")
        ));
    }
    out
}
