//! The address-space rules where ranges enter the store: networks (also
//! the automatic `default` one), floating-IP pools, the hosts' reported
//! ranges, and the findings `nubis admin check` lists.

use super::*;
use nubis_api::agent::{HostAddress, HostAddressing, HostRoute};
use nubis_controller::address_space::{TenantPools, Violation};
use nubis_controller::store::networks::NewNetwork;
use nubis_controller::store::NewServer;

store_tests!(
    hosts_keep_their_reported_ranges,
    networks_on_a_host_range_are_refused_and_nothing_is_made,
    default_networks_come_from_the_pools_clear_of_host_ranges,
    floating_pools_stay_clear_of_tenant_pools_and_networks,
    admin_check_lists_networks_and_fixed_ips_that_break_the_rules,
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

/// A host on 10.99.0.2/24 with a route to 10.100.0.0/16 (and a default route).
fn lan_addressing() -> HostAddressing {
    HostAddressing {
        addresses: vec![HostAddress {
            ip: [10, 99, 0, 2].into(),
            prefix_len: 24,
            device: "eth0".into(),
        }],
        routes: vec![
            HostRoute {
                destination: "0.0.0.0/0".parse().unwrap(),
                device: Some("eth0".into()),
            },
            HostRoute {
                destination: "10.100.0.0/16".parse().unwrap(),
                device: Some("eth0".into()),
            },
        ],
    }
}

async fn host_on_the_lan(db: &Db) -> HostId {
    db.register_host(&RegisterHost {
        addressing: Some(lan_addressing()),
        shared_store: None,
        ..register("h1", 4)
    })
    .await
    .unwrap()
    .id
}

#[track_caller]
fn assert_violation<T: std::fmt::Debug>(result: Result<T, StoreError>, mention: &str) {
    match result {
        Err(StoreError::AddressSpace(v)) if v.to_string().contains(mention) => {}
        other => panic!("expected an address-space refusal mentioning {mention:?}, got {other:?}"),
    }
}

async fn hosts_keep_their_reported_ranges(db: &Db) {
    let alice = user(db, "alice").await;
    let h1 = host_on_the_lan(db).await;
    assert_violation(
        db.create_network(&new_network(alice.project, "lan", "10.99.0.0/24"))
            .await,
        "overlaps the address 10.99.0.2/24 of host h1",
    );
    // Registering again without ranges (an older agent) keeps them.
    db.register_host(&register("h1", 4)).await.unwrap();
    assert_violation(
        db.create_network(&new_network(alice.project, "lan", "10.99.0.0/24"))
            .await,
        "of host h1",
    );
    // A report with new ranges replaces them: the LAN moved.
    db.set_host_addressing(
        h1,
        &HostAddressing {
            addresses: vec![],
            routes: vec![],
        },
    )
    .await
    .unwrap();
    db.create_network(&new_network(alice.project, "lan", "10.99.0.0/24"))
        .await
        .expect("the range is free once the host no longer has it");
}

async fn networks_on_a_host_range_are_refused_and_nothing_is_made(db: &Db) {
    let alice = user(db, "alice").await;
    host_on_the_lan(db).await;
    for (cidr, mention) in [
        (
            "10.100.7.0/24",
            "overlaps the route 10.100.0.0/16 of host h1",
        ),
        (
            "10.99.0.0/24",
            "overlaps the address 10.99.0.2/24 of host h1",
        ),
        (
            "8.8.8.0/24",
            "outside the tenant address pools (10.64.0.0/10)",
        ),
        ("127.0.0.0/24", "loopback"),
        ("169.254.169.0/24", "link-local"),
        ("224.0.0.0/24", "multicast"),
    ] {
        assert_violation(
            db.create_network(&new_network(alice.project, "bad", cidr))
                .await,
            mention,
        );
    }
    assert!(db.list_networks(alice.project).await.unwrap().is_empty());
    // Positive control: a free range of the pool.
    let ok = db
        .create_network(&new_network(alice.project, "lan", "10.101.0.0/24"))
        .await
        .unwrap();
    assert_eq!(ok.cidr.to_string(), "10.101.0.0/24");
}

async fn default_networks_come_from_the_pools_clear_of_host_ranges(db: &Db) {
    // A store held to a small custom pool whose first /24 is a host's LAN.
    let store = Store::connect(&db.url)
        .await
        .unwrap()
        .with_tenant_pools(TenantPools::new(vec!["10.99.0.0/23".parse().unwrap()]).unwrap());
    let (alice, bob, carol) = (
        user(db, "alice").await,
        user(db, "bob").await,
        user(db, "carol").await,
    );
    host_on_the_lan(db).await;
    let a = store
        .ensure_default_network(alice.project, "nubis.internal")
        .await
        .unwrap();
    assert_eq!(
        a.cidr.to_string(),
        "10.99.1.0/24",
        "10.99.0.0/24 is the host's"
    );
    // Only bob's project makes one: the pool is full after it.
    let full = store
        .ensure_default_network(bob.project, "nubis.internal")
        .await
        .unwrap_err();
    assert!(
        full.to_string().contains(
            "no free range left for a default network in the tenant pools (10.99.0.0/23)"
        ),
        "{full}"
    );
    // The default pool still has room for carol (the store in `db`).
    let c = db
        .ensure_default_network(carol.project, "nubis.internal")
        .await
        .unwrap();
    assert_eq!(c.cidr.to_string(), "10.64.0.0/24");
}

async fn floating_pools_stay_clear_of_tenant_pools_and_networks(db: &Db) {
    let alice = user(db, "alice").await;
    let custom = Store::connect(&db.url).await.unwrap().with_tenant_pools(
        TenantPools::new(vec![
            "10.64.0.0/10".parse().unwrap(),
            "192.168.0.0/16".parse().unwrap(),
        ])
        .unwrap(),
    );
    custom
        .create_network(&new_network(alice.project, "lan", "192.168.5.0/24"))
        .await
        .unwrap();
    // Another store held to the default pool only still sees the network.
    assert_violation(
        db.create_floating_ip_pool("a", [192, 168, 5, 10].into(), [192, 168, 5, 20].into())
            .await,
        "192.168.5.10-192.168.5.20 overlaps the network 192.168.5.0/24",
    );
    assert_violation(
        db.create_floating_ip_pool("b", [10, 64, 0, 10].into(), [10, 64, 0, 20].into())
            .await,
        "overlaps the tenant pool 10.64.0.0/10",
    );
    assert!(db.list_floating_ip_pools().await.unwrap().is_empty());
    db.create_floating_ip_pool("public", [203, 0, 113, 10].into(), [203, 0, 113, 20].into())
        .await
        .expect("a pool clear of everything");
    // And a network may not take the floating pool's range.
    let custom = custom
        .with_tenant_pools(TenantPools::new(vec!["203.0.113.0/24".parse().unwrap()]).unwrap());
    assert_violation(
        custom
            .create_network(&new_network(alice.project, "pub", "203.0.113.0/28"))
            .await,
        "overlaps the floating-IP pool 'public' (203.0.113.10-203.0.113.20)",
    );
}

async fn admin_check_lists_networks_and_fixed_ips_that_break_the_rules(db: &Db) {
    let alice = user(db, "alice").await;
    let image = image(db, alice.project, "debian-12").await;
    let host = host(db, "host-a").await;
    let good = db
        .create_network(&new_network(alice.project, "good", "10.77.0.0/24"))
        .await
        .unwrap();
    let server = |name| NewServer {
        ports: vec![nubis_controller::store::NewPort {
            network: &good,
            fixed_ip: Some([10, 77, 0, 50].into()),
        }],
        ..new_server(alice.project, name, image, host, (1, 512, 1))
    };
    let web = db.create_server(&server("web")).await.unwrap().id;
    // The store refuses a fixed IP on the gateway itself.
    assert_violation(
        db.create_server(&NewServer {
            ports: vec![nubis_controller::store::NewPort {
                network: &good,
                fixed_ip: Some([10, 77, 0, 1].into()),
            }],
            ..new_server(alice.project, "db", image, host, (1, 512, 1))
        })
        .await,
        "fixed IP 10.77.0.1 is the gateway of 10.77.0.0/24",
    );
    // Positive control: all is well so far.
    assert_eq!(db.address_space_findings().await.unwrap(), vec![]);

    // Rows made when the rules (or the pools) were different: a network
    // outside today's pool, and (raw SQL) a port on a network's gateway.
    let old = Store::connect(&db.url)
        .await
        .unwrap()
        .with_tenant_pools(TenantPools::new(vec!["192.168.0.0/16".parse().unwrap()]).unwrap());
    old.create_network(&new_network(alice.project, "old", "192.168.7.0/24"))
        .await
        .unwrap();
    raw_execute(
        db,
        "UPDATE ports SET ip = '10.77.0.1' WHERE server_id = $1",
        web.to_string(),
    )
    .await;
    let findings = db.address_space_findings().await.unwrap();
    let text: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        text,
        [
            "network alice/old (192.168.7.0/24): 192.168.7.0/24 is outside the tenant address pools (10.64.0.0/10); choose a range inside one",
            "server web on network alice/good: fixed IP 10.77.0.1 is the gateway of 10.77.0.0/24",
        ]
    );
    assert!(matches!(
        findings[0].violation,
        Violation::OutsidePools { .. }
    ));
    // They keep working: the network is still listed.
    assert_eq!(db.list_networks(alice.project).await.unwrap().len(), 2);
}
