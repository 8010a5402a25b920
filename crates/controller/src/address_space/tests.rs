use super::*;
use nubis_api::agent::{HostAddress, HostRoute};

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The default pool, a floating pool and one host with a LAN address, a
/// default route and a route to a further LAN.
fn space() -> AddressSpace {
    AddressSpace {
        tenant_pools: TenantPools::default(),
        floating_pools: vec![FloatingIpPool {
            id: nubis_api::FloatingIpPoolId::new(),
            name: "public".into(),
            first: ip("10.120.0.10"),
            last: ip("10.120.0.20"),
        }],
        hosts: vec![HostRanges {
            host: "h1".into(),
            addressing: HostAddressing {
                addresses: vec![HostAddress {
                    ip: ip("10.99.0.2"),
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
            },
        }],
    }
}

#[track_caller]
fn refused(result: Result<(), Violation>, mention: &str) {
    let err = result.expect_err(mention);
    assert!(
        err.to_string().contains(mention),
        "{err} does not mention {mention:?}"
    );
}

#[test]
fn a_range_inside_the_pool_touching_nothing_is_accepted() {
    let s = space();
    assert_eq!(
        s.check_network(cidr("10.77.0.0/24"), ip("10.77.0.1")),
        Ok(())
    );
    assert_eq!(
        s.check_network(cidr("10.64.0.0/16"), ip("10.64.0.254")),
        Ok(())
    );
}

#[test]
fn special_ranges_are_refused_whatever_the_pools() {
    // Even an operator's pool cannot let them in: the check comes first.
    let s = space();
    for (range, mention) in [
        ("127.0.0.0/24", "overlaps the loopback range 127.0.0.0/8"),
        ("169.254.169.0/24", "overlaps the link-local range"),
        ("224.0.0.0/24", "overlaps the multicast range 224.0.0.0/4"),
        ("0.0.0.0/24", "overlaps the unspecified range 0.0.0.0/8"),
        ("240.0.0.0/24", "overlaps the reserved range"),
        ("255.255.255.0/24", "broadcast address 255.255.255.255"),
    ] {
        refused(
            s.check_network(cidr(range), cidr(range).first_host()),
            mention,
        );
    }
}

#[test]
fn a_range_outside_every_pool_is_refused() {
    refused(
        space().check_network(cidr("8.8.8.0/24"), ip("8.8.8.1")),
        "8.8.8.0/24 is outside the tenant address pools (10.64.0.0/10)",
    );
    // Partly inside is outside.
    refused(
        space().check_network(cidr("10.0.0.0/16"), ip("10.0.0.1")),
        "outside the tenant address pools",
    );
}

#[test]
fn the_last_range_of_a_pool_is_inside_and_the_next_is_not() {
    let s = space();
    assert_eq!(
        s.check_network(cidr("10.127.255.0/24"), ip("10.127.255.1")),
        Ok(())
    );
    refused(
        s.check_network(cidr("10.128.0.0/24"), ip("10.128.0.1")),
        "outside the tenant address pools",
    );
}

#[test]
fn custom_pools_replace_the_default() {
    let pools = TenantPools::new(vec!["172.16.0.0/12".parse().unwrap()]).unwrap();
    let s = AddressSpace {
        tenant_pools: pools,
        ..AddressSpace::default()
    };
    assert_eq!(
        s.check_network(cidr("172.20.0.0/24"), ip("172.20.0.1")),
        Ok(())
    );
    refused(
        s.check_network(cidr("10.77.0.0/24"), ip("10.77.0.1")),
        "outside the tenant address pools (172.16.0.0/12)",
    );
}

#[test]
fn pools_themselves_are_checked() {
    refused(
        TenantPools::new(vec!["127.0.0.0/8".parse().unwrap()]).map(drop),
        "loopback",
    );
    refused(
        TenantPools::new(vec!["0.0.0.0/0".parse().unwrap()]).map(drop),
        "must be a /1 to a /29",
    );
    refused(
        TenantPools::new(vec!["10.0.0.0/30".parse().unwrap()]).map(drop),
        "must be a /1 to a /29",
    );
    assert_eq!(TenantPools::new(vec![]).unwrap(), TenantPools::default());
}

#[test]
fn floating_pools_are_refused() {
    refused(
        space().check_network(cidr("10.120.0.0/24"), ip("10.120.0.1")),
        "10.120.0.0/24 overlaps the floating-IP pool 'public' (10.120.0.10-10.120.0.20)",
    );
}

#[test]
fn host_addresses_with_their_subnets_are_refused() {
    refused(
        space().check_network(cidr("10.99.0.0/24"), ip("10.99.0.1")),
        "10.99.0.0/24 overlaps the address 10.99.0.2/24 of host h1",
    );
    // A smaller range inside the host's subnet too.
    refused(
        space().check_network(cidr("10.99.0.128/29"), ip("10.99.0.129")),
        "of host h1",
    );
}

#[test]
fn host_routes_are_refused_but_not_the_default_route() {
    refused(
        space().check_network(cidr("10.100.5.0/24"), ip("10.100.5.1")),
        "10.100.5.0/24 overlaps the route 10.100.0.0/16 of host h1",
    );
    // The default route covers everything; it does not count.
    assert_eq!(
        space().check_network(cidr("10.101.0.0/24"), ip("10.101.0.1")),
        Ok(())
    );
}

#[test]
fn the_gateway_must_be_a_host_address_of_the_network() {
    let s = space();
    for gw in ["10.77.0.0", "10.77.0.255", "10.77.1.1"] {
        refused(
            s.check_network(cidr("10.77.0.0/24"), ip(gw)),
            &format!("gateway {gw} is not a host address of 10.77.0.0/24"),
        );
    }
    assert_eq!(
        s.check_network(cidr("10.77.0.0/24"), ip("10.77.0.254")),
        Ok(())
    );
}

#[test]
fn fixed_ips_are_host_addresses_and_not_the_gateway() {
    let (c, gw) = (cidr("10.77.0.0/24"), ip("10.77.0.1"));
    for (addr, why) in [
        ("10.77.1.5", "outside the network"),
        ("10.77.0.0", "the network address"),
        ("10.77.0.255", "the broadcast address"),
        ("10.77.0.1", "the gateway"),
    ] {
        refused(
            check_fixed_ip(c, gw, ip(addr)),
            &format!("fixed IP {addr} is {why} of 10.77.0.0/24"),
        );
    }
    assert_eq!(check_fixed_ip(c, gw, ip("10.77.0.50")), Ok(()));
}

#[test]
fn floating_pools_stay_clear_of_tenant_pools_and_networks() {
    let pools = TenantPools::default();
    refused(
        check_floating_pool(ip("10.64.0.1"), ip("10.64.0.9"), &pools, &[]),
        "10.64.0.1-10.64.0.9 overlaps the tenant pool 10.64.0.0/10",
    );
    refused(
        check_floating_pool(
            ip("192.168.0.10"),
            ip("192.168.0.20"),
            &pools,
            &[cidr("192.168.0.0/24")],
        ),
        "overlaps the network 192.168.0.0/24",
    );
    refused(
        check_floating_pool(ip("127.0.0.1"), ip("127.0.0.9"), &pools, &[]),
        "loopback",
    );
    assert_eq!(
        check_floating_pool(ip("203.0.113.10"), ip("203.0.113.20"), &pools, &[]),
        Ok(())
    );
}

#[test]
fn default_networks_are_cut_from_the_pools() {
    let pools = TenantPools::new(vec![
        "10.64.0.0/23".parse().unwrap(),
        "192.168.5.0/28".parse().unwrap(),
    ])
    .unwrap();
    let all: Vec<String> = pools
        .default_network_candidates()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(all, ["10.64.0.0/24", "10.64.1.0/24", "192.168.5.0/28"]);
    assert_eq!(
        TenantPools::default().default_network_candidates().count(),
        1 << 14
    );
}

#[test]
fn audit_lists_networks_and_fixed_ips_that_break_a_rule() {
    let net = |id: &str, name: &str, c: &str| ExistingNetwork {
        id: id.into(),
        name: name.into(),
        project: "alice".into(),
        cidr: cidr(c),
        gateway: cidr(c).first_host(),
    };
    let networks = [
        net("1", "good", "10.77.0.0/24"),
        net("2", "old", "10.0.0.0/24"),
    ];
    let ports = [
        ExistingPort {
            network_id: "1".into(),
            server: "web".into(),
            ip: ip("10.77.0.1"),
        },
        ExistingPort {
            network_id: "1".into(),
            server: "db".into(),
            ip: ip("10.77.0.5"),
        },
    ];
    let findings: Vec<String> = audit(&space(), &networks, &ports)
        .iter()
        .map(|f| f.to_string())
        .collect();
    assert_eq!(
        findings,
        [
            "network alice/old (10.0.0.0/24): 10.0.0.0/24 is outside the tenant address pools (10.64.0.0/10); choose a range inside one",
            "server web on network alice/good: fixed IP 10.77.0.1 is the gateway of 10.77.0.0/24",
        ]
    );
    // Positive control: nothing to say about good rows.
    assert!(audit(&space(), &networks[..1], &ports[1..]).is_empty());
}
