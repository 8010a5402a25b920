//! Guests are fenced off the host, end to end, in network namespaces: with
//! listeners on the host's SSH port and with the controller and the agent
//! listening on 0.0.0.0, a guest whose security group allows all TCP
//! reaches none of them, neither on its gateway address nor on the host's
//! uplink address, nor an outside address inside `--management-cidr`;
//! while DHCP, DNS and the metadata service answer it and another outside
//! address is reachable. Each refused port answers from the host itself and
//! from the outside namespace (positive controls for the listeners).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::ssh;
use support::netns::{link_outside, run_in_netns, NetNs};

const BOOT: Duration = Duration::from_secs(240);
/// The host's address on the uplink to the outside namespace.
const UPLINK: &str = "203.0.113.1";
/// An outside address guests may reach.
const OUTSIDE: &str = "203.0.113.254";
/// An outside address inside `--management-cidr`.
const MANAGEMENT: &str = "203.0.113.253";
/// The port of the outside listeners.
const OUTSIDE_PORT: u16 = 9000;
const CONTROLLER_PORT: u16 = 8780;
const AGENT_PORT: u16 = 8782;
const CLUSTER_PORT: u16 = 8781;
/// What the test's own listeners say to whoever connects.
const BANNER: &str = "fence-listener\n";

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip");
    assert!(status.success(), "ip {args:?}");
}

/// Enters `ns` on the calling thread (a thread of its own: namespaces are
/// per thread).
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Serves `BANNER` on `addr` (inside `ns` if given, else the caller's
/// namespace) on a thread of its own, for the rest of the test process.
fn serve_banner(ns: Option<String>, addr: SocketAddr) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(ns) = &ns {
            enter(ns);
        }
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        ready_tx.send(()).unwrap();
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(BANNER.as_bytes());
        }
    });
    ready_rx.recv().expect("listener ready");
}

/// Whether something answers at `addr` from `ns` (else the caller's
/// namespace): connects, sends an HTTP request, and reads a first byte.
fn answers_from(ns: Option<String>, addr: SocketAddr) -> bool {
    std::thread::spawn(move || {
        if let Some(ns) = &ns {
            enter(ns);
        }
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let mut byte = [0u8; 1];
        matches!(s.read(&mut byte), Ok(1))
    })
    .join()
    .expect("probe thread")
}

/// The command that asks `host:port` from inside the guest and prints what
/// answered (nothing when the connection is dropped or refused).
fn guest_probe(host: &str, port: u16) -> String {
    format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 10 nc -w 3 {host} {port} | head -c 64; true"
    )
}

#[test]
fn guests_reach_only_dhcp_dns_and_metadata_of_the_host() {
    // The outside world: its own namespace, linked to the host's by a veth.
    let outside = NetNs::new("fenceout");
    let out_name = outside.name.clone();
    run_in_netns("fence", move || async move {
        link_outside(
            &out_name,
            "fence-host",
            &format!("{UPLINK}/24"),
            "fence-out",
            &format!("{OUTSIDE}/24"),
        );
        ip(&[
            "-n",
            &out_name,
            "addr",
            "add",
            &format!("{MANAGEMENT}/24"),
            "dev",
            "fence-out",
        ]);
        for a in [OUTSIDE, MANAGEMENT] {
            serve_banner(
                Some(out_name.clone()),
                format!("{a}:{OUTSIDE_PORT}").parse().unwrap(),
            );
        }
        // The host's SSH port, on every address, as sshd listens.
        serve_banner(None, "0.0.0.0:22".parse().unwrap());

        // The controller and the agent listen on every address too, so only
        // the fence can keep guests out.
        let listen = format!("0.0.0.0:{CONTROLLER_PORT}");
        let agent_listen = format!("0.0.0.0:{AGENT_PORT}");
        let cluster_listen = format!("0.0.0.0:{CLUSTER_PORT}");
        let management = format!("{MANAGEMENT}/32");
        let mut cloud = Cloud::start_with(&[
            "--listen",
            &listen,
            "--agent-listen",
            &agent_listen,
            "--cluster-listen",
            &cluster_listen,
            "--management-cidr",
            &management,
        ])
        .await;
        cloud.register_and_login("gail", "gail-password").await;
        cloud.upload_tiny_image();
        let key = cloud.keypair("k").await;

        // A security group that allows all TCP both ways (and everything out).
        let (s, group) = cloud
            .call(
                Method::POST,
                "/v1/security-groups",
                Some(json!({"name": "wide-open"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{group}");
        let gid = group["id"].as_str().unwrap().to_owned();
        for rule in [
            json!({"direction": "ingress", "protocol": "tcp"}),
            json!({"direction": "egress", "protocol": "tcp"}),
            json!({"direction": "egress", "protocol": "any"}),
        ] {
            let (s, b) = cloud
                .call(
                    Method::POST,
                    &format!("/v1/security-groups/{gid}/rules"),
                    Some(rule.clone()),
                )
                .await;
            assert!(
                s == StatusCode::CREATED || s == StatusCode::CONFLICT,
                "{rule}: {s} {b}"
            );
        }
        let (_, g) = cloud
            .call(Method::GET, &format!("/v1/security-groups/{gid}"), None)
            .await;
        assert!(
            g["rules"].as_array().is_some_and(|r| r.iter().any(|r| {
                r["direction"] == "ingress" && r["protocol"] == "tcp" && r["port_min"].is_null()
            })),
            "the group allows all TCP in: {g}"
        );

        let (id, server) = cloud
            .create_server(json!({"name": "fenced", "image": "tiny", "flavor": "tiny",
                                  "key_name": "k", "security_groups": ["wide-open"]}))
            .await;
        let guest_ip = server["addresses"][0]["ip"].as_str().unwrap().to_owned();
        let dns_name = server["dns_name"].as_str().unwrap().to_owned();
        let gateway = {
            let o: Vec<&str> = guest_ip.split('.').collect();
            format!("{}.{}.{}.1", o[0], o[1], o[2])
        };
        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        let console = cloud.console_log(&id).await;

        let in_guest = |command: &str| -> String {
            let out = ssh(None, &key, &guest_ip, command);
            assert!(
                out.status.success(),
                "ssh {command:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };

        // Positive controls, from the guest: DHCP gave it its address (at
        // boot, and again now), DNS through the gateway names it, the
        // metadata service answers, the outside world answers.
        assert!(
            console.contains(&format!("nubis-tiny: dhcp eth0 {guest_ip}/")),
            "the guest got its lease by DHCP:\n{console}"
        );
        assert!(
            console.contains("nubis-tiny: metadata-service"),
            "the guest read its metadata at boot:\n{console}"
        );
        let renew =
            in_guest("udhcpc -i eth0 -n -q -t 5 -T 2 -s /bin/true >/dev/null 2>&1 && echo leased");
        assert_eq!(renew.trim(), "leased", "DHCP answers now");
        let lookup = in_guest(&format!("nslookup {dns_name} {gateway}"));
        assert!(lookup.contains(&guest_ip), "DNS answers: {lookup}");
        let metadata = in_guest(
            "printf 'GET /latest/meta-data/instance-id HTTP/1.0\\r\\nHost: 169.254.169.254\\r\\n\\r\\n' \
             | timeout 10 nc -w 3 169.254.169.254 80",
        );
        assert!(metadata.contains(&id), "metadata answers: {metadata}");
        let outside_answer = in_guest(&guest_probe(OUTSIDE, OUTSIDE_PORT));
        assert_eq!(
            outside_answer, BANNER,
            "positive control: the outside world is reachable"
        );

        // The attack: every port of the host, on the gateway address and on
        // the uplink address, from a guest whose group allows all TCP.
        for host in [gateway.as_str(), UPLINK] {
            for port in [22, CONTROLLER_PORT, CLUSTER_PORT, AGENT_PORT] {
                let addr: SocketAddr = format!("{host}:{port}").parse().unwrap();
                assert!(
                    answers_from(None, addr),
                    "positive control: {addr} answers on the host itself"
                );
                if host == UPLINK {
                    assert!(
                        answers_from(Some(out_name.clone()), addr),
                        "positive control: {addr} answers from outside"
                    );
                }
                let got = in_guest(&guest_probe(host, port));
                assert_eq!(got, "", "the guest must not reach the host at {addr}");
            }
        }
        // The metadata service only through its address, not on the gateway.
        let direct = in_guest(&guest_probe(&gateway, 8775));
        assert_eq!(direct, "", "the metadata port is not open on the gateway");

        // A management range is closed to guests, the rest of outside is not.
        let managed: SocketAddr = format!("{MANAGEMENT}:{OUTSIDE_PORT}").parse().unwrap();
        assert!(
            answers_from(None, managed),
            "positive control: the management address answers the host"
        );
        let got = in_guest(&guest_probe(MANAGEMENT, OUTSIDE_PORT));
        assert_eq!(got, "", "the guest must not reach the management range");
        let outside_answer = in_guest(&guest_probe(OUTSIDE, OUTSIDE_PORT));
        assert_eq!(
            outside_answer, BANNER,
            "positive control: the other outside address still answers"
        );
    });
    drop(outside);
}
