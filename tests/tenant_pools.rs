//! Tenant address space end to end: a real `nubis up` in a network
//! namespace with an uplink (10.99.0.2/24, default route through a second
//! namespace) refuses networks on loopback, the metadata range, multicast,
//! a public range outside the tenant pool and its own uplink subnet, and
//! a server cannot be put on them; the host's addresses and routes stay
//! exactly as they were. A range in the pool is made, and a server on it
//! gets its address by DHCP (the positive control, which also shows that
//! a network in use does change the host: its bridge appears).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use support::cloud::Cloud;
use support::netns::{run_in, NetNs};

const BOOT: Duration = Duration::from_secs(300);

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("running ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// `ip -j <what>` in the current namespace, parsed.
fn ip_json(what: &[&str]) -> Vec<Value> {
    let out = Command::new("ip")
        .arg("-j")
        .args(what)
        .output()
        .expect("running ip");
    assert!(out.status.success(), "ip -j {what:?} failed");
    serde_json::from_slice(&out.stdout).expect("ip -j output is JSON")
}

/// The namespace's interfaces with their addresses, and its routes,
/// without those of `skip` (a bridge or TAP name prefix), sorted.
fn host_state(skip: &[&str]) -> (Vec<String>, Vec<String>) {
    let keep = |dev: &str| !skip.iter().any(|p| dev.starts_with(p));
    let mut addrs: Vec<String> = ip_json(&["-4", "addr", "show"])
        .into_iter()
        .filter(|l| keep(l["ifname"].as_str().unwrap_or("")))
        .map(|mut l| {
            // Counters and timers are not state a tenant could change.
            l.as_object_mut().unwrap().remove("stats64");
            l.to_string()
        })
        .collect();
    let mut routes: Vec<String> = ip_json(&["-4", "route", "show", "table", "all"])
        .into_iter()
        .filter(|r| keep(r["dev"].as_str().unwrap_or("")))
        .map(|r| r.to_string())
        .collect();
    addrs.sort();
    routes.sort();
    (addrs, routes)
}

fn bridges() -> Vec<String> {
    ip_json(&["link", "show"])
        .into_iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
        .filter(|n| n.starts_with("nbr-"))
        .collect()
}

#[test]
fn forbidden_ranges_are_refused_and_change_nothing_on_the_host() {
    // The uplink: the test namespace's up0 (10.99.0.2/24) to up1 in an
    // "outside" namespace (10.99.0.1/24), the default route through it.
    let outside = NetNs::new("tp-out");
    let ns = NetNs::new("tenant-pools");
    ip(&[
        "-n",
        &ns.name,
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "up1",
        "netns",
        &outside.name,
    ]);
    ip(&["-n", &ns.name, "addr", "add", "10.99.0.2/24", "dev", "up0"]);
    ip(&["-n", &ns.name, "link", "set", "up0", "up"]);
    ip(&[
        "-n",
        &outside.name,
        "addr",
        "add",
        "10.99.0.1/24",
        "dev",
        "up1",
    ]);
    ip(&["-n", &outside.name, "link", "set", "up1", "up"]);
    ip(&[
        "-n",
        &ns.name,
        "route",
        "add",
        "default",
        "via",
        "10.99.0.1",
    ]);
    run_in(ns, || async {
        let mut cloud = Cloud::start().await;
        // The agent registers (with the host's addresses and routes) after
        // the API answers: wait until /readyz lists its host.
        support::wait_for("the host to register", Duration::from_secs(60), || async {
            let (_, b) = cloud.call(Method::GET, "/readyz", None).await;
            b["hosts"].as_array().filter(|h| !h.is_empty()).map(|_| ())
        })
        .await;
        cloud
            .register_and_login("mallory", "mallory-password")
            .await;
        cloud.upload_tiny_image();
        let before = host_state(&[]);
        assert!(
            before.0.iter().any(|a| a.contains("10.99.0.2")),
            "the uplink address is seen: {before:?}"
        );

        for (cidr, rule) in [
            ("127.0.0.0/24", "overlaps the loopback range 127.0.0.0/8"),
            ("169.254.169.0/24", "overlaps the link-local range"),
            ("224.0.0.0/24", "overlaps the multicast range 224.0.0.0/4"),
            (
                "8.8.8.0/24",
                "is outside the tenant address pools (10.64.0.0/10)",
            ),
            ("10.99.0.0/24", "overlaps the address 10.99.0.2/24 of host"),
        ] {
            let gateway = cidr.replace(".0/24", ".1");
            let (s, b) = cloud
                .call(
                    Method::POST,
                    "/v1/networks",
                    Some(json!({"name": "evil", "cidr": cidr, "gateway": gateway})),
                )
                .await;
            assert!(s.is_client_error(), "{cidr}: {s} {b}");
            assert_eq!(b["error"]["code"], "address_not_allowed", "{cidr}: {b}");
            let message = b["error"]["message"].as_str().unwrap_or("");
            assert!(message.contains(rule), "{cidr}: {message}");
            // Nor can a server be put on it.
            let (s, b) = cloud
                .call(
                    Method::POST,
                    "/v1/servers",
                    Some(json!({"name": "evil", "image": "tiny", "flavor": "tiny",
                                "networks": [{"network": "evil", "fixed_ip": gateway}]})),
                )
                .await;
            assert!(s.is_client_error(), "{cidr}: server {s} {b}");
        }
        let (s, nets) = cloud.call(Method::GET, "/v1/networks", None).await;
        assert_eq!(s, StatusCode::OK);
        let names: Vec<&str> = nets
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["name"].as_str())
            .collect();
        assert_eq!(names, ["default"], "nothing was created: {nets}");
        let (_, servers) = cloud.call(Method::GET, "/v1/servers", None).await;
        assert_eq!(servers, json!([]));

        // Positive control: a range in the pool, and a server on it that
        // gets its address by DHCP.
        let (s, net) = cloud
            .call(
                Method::POST,
                "/v1/networks",
                Some(json!({"name": "lan", "cidr": "10.77.0.0/24"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{net}");
        let (id, server) = cloud
            .create_server(json!({"name": "web", "image": "tiny", "flavor": "tiny",
                                  "networks": [{"network": "lan", "fixed_ip": "10.77.0.50"}]}))
            .await;
        assert_eq!(server["addresses"][0]["ip"], "10.77.0.50");
        cloud.wait_status(&id, "running", BOOT).await;
        cloud
            .wait_console(
                &id,
                "nubis-tiny: dhcp eth0 10.77.0.50/24 router 10.77.0.1",
                BOOT,
            )
            .await;

        // The host changed only by the lan's bridge and the server's TAP
        // (which the forbidden attempts, made before, would have shown too).
        let bridges = bridges();
        assert_eq!(bridges.len(), 1, "only the lan's bridge: {bridges:?}");
        let after = host_state(&["nbr-", "ntap-"]);
        let before_without = {
            let (a, r) = before;
            let keep = |s: &String| !s.contains("\"nbr-") && !s.contains("\"ntap-");
            (
                a.into_iter().filter(keep).collect::<Vec<_>>(),
                r.into_iter().filter(keep).collect::<Vec<_>>(),
            )
        };
        assert_eq!(after.0, before_without.0, "addresses changed");
        assert_eq!(after.1, before_without.1, "routes changed");
        let with_bridge = host_state(&[]);
        assert!(
            with_bridge.1.iter().any(|r| r.contains("10.77.0.0/24")),
            "positive control: the lan's route is on the host: {:?}",
            with_bridge.1
        );

        // `nubis admin check` reads the same store: all is well under the
        // pools the cloud runs with; narrowed to another pool, the lan and
        // the default network are listed (they keep working) and it fails.
        let check = |pools: &[&str]| {
            let mut cmd = Command::new(support::cloud::nubis_bin());
            cmd.args(["admin", "check", "--data-dir"])
                .arg(cloud.data_path());
            for p in pools {
                cmd.args(["--tenant-pool", p]);
            }
            cmd.output().expect("running nubis admin check")
        };
        let ok = check(&[]);
        assert!(ok.status.success(), "{ok:?}");
        let narrowed = check(&["172.16.0.0/12"]);
        let listed = String::from_utf8_lossy(&narrowed.stdout).into_owned();
        assert!(!narrowed.status.success(), "{narrowed:?}");
        assert!(
            listed.contains("network mallory/lan (10.77.0.0/24): 10.77.0.0/24 is outside the tenant address pools (172.16.0.0/12)"),
            "{listed}"
        );
        assert!(listed.contains("network mallory/default"), "{listed}");
    });
    drop(outside);
}
