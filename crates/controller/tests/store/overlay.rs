//! Networks across hosts: a VNI per network (unique, allocated at create,
//! also under concurrent creates), hosts' tunnel addresses, and the ports of
//! a network on other hosts (what a host's VXLAN peers are made of).

use super::*;
use nubis_api::networks::Network;
use nubis_controller::store::networks::NewNetwork;
use nubis_controller::store::overlay::peers_from_ports;

store_tests!(
    networks_get_unique_vnis_even_when_made_at_once,
    remote_ports_are_those_on_other_hosts_with_a_tunnel,
    a_server_moving_live_is_reached_on_its_source_until_it_arrived,
    hosts_on_a_servers_networks_are_those_its_move_concerns,
);

fn new_network<'a>(project: ProjectId, name: &'a str, cidr: &str) -> NewNetwork<'a> {
    let cidr: nubis_api::networks::Cidr = cidr.parse().unwrap();
    NewNetwork {
        project,
        name,
        cidr,
        gateway: cidr.first_host(),
        dns_zone: "nubis.internal",
    }
}

/// The networks `lan` (10.91.0.0/24) and `other` (10.92.0.0/24) of `project`.
async fn two_networks(db: &Db, project: ProjectId) -> (Network, Network) {
    let mut made = Vec::new();
    for (name, cidr) in [("lan", "10.91.0.0/24"), ("other", "10.92.0.0/24")] {
        made.push(
            db.create_network(&new_network(project, name, cidr))
                .await
                .unwrap(),
        );
    }
    let other = made.pop().unwrap();
    (made.pop().unwrap(), other)
}

/// A small server with one port on `network`.
fn on_network<'a>(
    project: ProjectId,
    image: ImageId,
    name: &'a str,
    host: HostId,
    network: &'a Network,
) -> NewServer<'a> {
    NewServer {
        ports: vec![nubis_controller::store::NewPort {
            network,
            fixed_ip: None,
        }],
        ..new_server(project, name, image, host, (1, 512, 1))
    }
}

async fn networks_get_unique_vnis_even_when_made_at_once(db: &Db) {
    let alice = user(db, "alice").await;
    let first = db
        .create_network(&new_network(alice.project, "n0", "10.90.0.0/24"))
        .await
        .unwrap();
    let first_vni = db.network_vni(first.id).await.unwrap();
    assert!(first_vni >= 1);
    super::concurrency::warm_pool(db).await;
    let names: Vec<String> = (1..=12).map(|i| format!("n{i}")).collect();
    let cidrs: Vec<String> = (1..=12).map(|i| format!("10.90.{i}.0/24")).collect();
    // Two projects (a project's quota is 10 networks).
    let bob = user(db, "bob").await;
    let news: Vec<NewNetwork> = names
        .iter()
        .zip(&cidrs)
        .enumerate()
        .map(|(i, (n, c))| {
            let project = if i % 2 == 0 {
                alice.project
            } else {
                bob.project
            };
            new_network(project, n, c)
        })
        .collect();
    let made = futures_util::future::join_all(news.iter().map(|n| db.create_network(n))).await;
    let mut vnis = vec![first_vni];
    for (name, network) in names.iter().zip(made) {
        let network = network.unwrap_or_else(|e| panic!("creating {name} beside others: {e}"));
        vnis.push(db.network_vni(network.id).await.unwrap());
    }
    let mut unique = vnis.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 13, "VNIs must differ: {vnis:?}");
    assert!(vnis.iter().all(|v| (1..=0xFF_FFFF).contains(v)), "{vnis:?}");
    // A refused create (same name) takes no VNI away from the next.
    assert!(db
        .create_network(&new_network(alice.project, "n0", "10.90.99.0/24"))
        .await
        .is_err());
    let next = db
        .create_network(&new_network(alice.project, "n13", "10.90.13.0/24"))
        .await
        .unwrap();
    assert!(!vnis.contains(&db.network_vni(next.id).await.unwrap()));
}

async fn remote_ports_are_those_on_other_hosts_with_a_tunnel(db: &Db) {
    let alice = user(db, "alice").await;
    let image = image(db, alice.project, "debian-12").await;
    let (a, b, c) = (
        host(db, "host-a").await,
        host(db, "host-b").await,
        host(db, "host-c").await,
    );
    let ip = |s: &str| -> std::net::Ipv4Addr { s.parse().unwrap() };
    db.set_host_tunnel_ip(a, Some(ip("172.31.0.11")))
        .await
        .unwrap();
    db.set_host_tunnel_ip(b, Some(ip("172.31.0.12")))
        .await
        .unwrap();
    // Host c reported no tunnel address: its ports cannot be reached.
    assert_eq!(db.host_tunnel_ip(b).await.unwrap(), Some(ip("172.31.0.12")));
    assert_eq!(db.host_tunnel_ip(c).await.unwrap(), None);
    let (lan, other) = two_networks(db, alice.project).await;
    let on = |name, host, network| on_network(alice.project, image, name, host, network);
    db.create_server(&on("a1", a, &lan)).await.unwrap();
    let b1 = db.create_server(&on("b1", b, &lan)).await.unwrap();
    db.create_server(&on("c1", c, &lan)).await.unwrap();
    db.create_server(&on("b2", b, &other)).await.unwrap();
    let b1_mac = db.server_ports(b1.id).await.unwrap()[0].2.clone();

    // Seen from host a: b's port on lan (c has no tunnel; other is another network).
    let remote = db.network_remote_ports(lan.id, a).await.unwrap();
    assert_eq!(remote, vec![(ip("172.31.0.12"), b1_mac.clone())]);
    let peers = peers_from_ports(remote, Some(ip("172.31.0.11")));
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].macs, vec![b1_mac.to_lowercase()]);
    // Seen from host b: a's port (positive control: the query sees host a).
    let from_b = db.network_remote_ports(lan.id, b).await.unwrap();
    assert_eq!(from_b.len(), 1);
    assert_eq!(from_b[0].0, ip("172.31.0.11"));
    // A network with ports on one host only has no remote ports there.
    assert!(db
        .network_remote_ports(other.id, b)
        .await
        .unwrap()
        .is_empty());
    // Clearing the tunnel address takes the host's ports out.
    db.set_host_tunnel_ip(b, None).await.unwrap();
    assert!(db.network_remote_ports(lan.id, a).await.unwrap().is_empty());
}

/// A live move places the server on its target at once, but the guest runs
/// on the source until the switch-over: peers keep sending there until the
/// move is done. A cold move (the guest is stopped) follows the placement.
async fn a_server_moving_live_is_reached_on_its_source_until_it_arrived(db: &Db) {
    use nubis_api::migrations::MigrationKind;
    use nubis_controller::store::moves::{ArrivalKind, NewMove};
    let alice = user(db, "alice").await;
    let image = image(db, alice.project, "debian-12").await;
    let ip = |s: &str| -> std::net::Ipv4Addr { s.parse().unwrap() };
    let mut hosts = Vec::new();
    for (name, addr) in [
        ("a", "172.31.0.11"),
        ("b", "172.31.0.12"),
        ("c", "172.31.0.13"),
    ] {
        let h = host(db, name).await;
        db.set_host_tunnel_ip(h, Some(ip(addr))).await.unwrap();
        hosts.push(h);
    }
    let (a, b, c) = (hosts[0], hosts[1], hosts[2]);
    let lan = db
        .create_network(&new_network(alice.project, "lan", "10.93.0.0/24"))
        .await
        .unwrap();
    let on = |name, host| NewServer {
        ports: vec![nubis_controller::store::NewPort {
            network: &lan,
            fixed_ip: None,
        }],
        ..new_server(alice.project, name, image, host, (1, 512, 1))
    };
    let mover = db.create_server(&on("mover", a)).await.unwrap();
    db.create_server(&on("client", b)).await.unwrap();
    let mac = db.server_ports(mover.id).await.unwrap()[0].2.clone();
    let seen_from_b = || async {
        db.network_remote_ports(lan.id, b)
            .await
            .unwrap()
            .into_iter()
            .filter(|(_, m)| *m == mac)
            .map(|(at, _)| at)
            .collect::<Vec<_>>()
    };
    assert_eq!(seen_from_b().await, vec![ip("172.31.0.11")]);
    let live = NewMove {
        server: mover.id,
        kind: MigrationKind::Live,
        arrival: ArrivalKind::Live,
        source: a,
        target: c,
        events: vec![(EventKind::Migrating, "migrating".into())],
        demand: nubis_controller::scheduler::Demand {
            vcpus: 1,
            memory_mib: 512,
            disk_gib: 1,
        },
        overcommit: Default::default(),
    };
    let m = db.start_move(&live, Utc::now()).await.unwrap();
    // Placed on c, still reached on a; the target sees it on a as well,
    // the source not as a remote port.
    assert_eq!(seen_from_b().await, vec![ip("172.31.0.11")]);
    let from_c = db.network_remote_ports(lan.id, c).await.unwrap();
    assert!(
        from_c.contains(&(ip("172.31.0.11"), mac.clone())),
        "{from_c:?}"
    );
    let from_a = db.network_remote_ports(lan.id, a).await.unwrap();
    assert!(from_a.iter().all(|(_, m)| *m != mac), "{from_a:?}");
    // Positive control: once the move is done, it is reached on c.
    db.finish_move(
        m.migration.id,
        Utc::now(),
        Some(120),
        (EventKind::Migrated, "migrated"),
    )
    .await
    .unwrap();
    assert_eq!(seen_from_b().await, vec![ip("172.31.0.13")]);
    // A cold move back to a follows the placement at once.
    let cold = NewMove {
        kind: MigrationKind::Cold,
        arrival: ArrivalKind::Copy,
        source: c,
        target: a,
        ..live
    };
    db.start_move(&cold, Utc::now()).await.unwrap();
    assert_eq!(seen_from_b().await, vec![ip("172.31.0.11")]);
}

/// The hosts a move of a server concerns beyond its two ends: those with a
/// server on one of its networks, and the source of a move under way of
/// such a server (it keeps the network until released); never a host with
/// servers on other networks only.
async fn hosts_on_a_servers_networks_are_those_its_move_concerns(db: &Db) {
    let alice = user(db, "alice").await;
    let image = image(db, alice.project, "debian-12").await;
    let mut hosts = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        hosts.push(host(db, &format!("host-{name}")).await);
    }
    let [a, b, c, d, e] = hosts[..] else {
        unreachable!()
    };
    let (lan, other) = two_networks(db, alice.project).await;
    let on = |name, host, network| on_network(alice.project, image, name, host, network);
    let mover = db.create_server(&on("mover", a, &lan)).await.unwrap().id;
    db.create_server(&on("peer", c, &lan)).await.unwrap();
    db.create_server(&on("elsewhere", d, &other)).await.unwrap();
    let leaving = db.create_server(&on("leaving", e, &lan)).await.unwrap().id;
    let sorted = |set: std::collections::HashSet<HostId>| {
        let mut v: Vec<HostId> = set.into_iter().collect();
        v.sort();
        v
    };
    let want = |mut v: Vec<HostId>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(db.hosts_on_networks_of(mover).await.unwrap()),
        want(vec![a, c, e])
    );
    // `leaving` moves from e to b: b has it now, e until the move ends.
    db.start_move(
        &nubis_controller::store::moves::NewMove {
            server: leaving,
            kind: nubis_api::migrations::MigrationKind::Cold,
            arrival: nubis_controller::store::moves::ArrivalKind::Copy,
            source: e,
            target: b,
            events: Vec::new(),
            demand: nubis_controller::scheduler::Demand {
                vcpus: 1,
                memory_mib: 512,
                disk_gib: 1,
            },
            overcommit: Default::default(),
        },
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(db.hosts_on_networks_of(mover).await.unwrap()),
        want(vec![a, b, c, e])
    );
    // Positive control for d: a server of `other` sees d (and only d).
    let lone = db.create_server(&on("lone", b, &other)).await.unwrap().id;
    assert_eq!(
        sorted(db.hosts_on_networks_of(lone).await.unwrap()),
        want(vec![b, d])
    );
}
