//! The host's nftables rules for instance networks, in one table Nubis owns
//! (`inet nubis`), replaced atomically as a whole whenever they change.

use super::command::run_with_input;
use super::host_fence::Fence;
use super::switch::BRIDGE_PREFIX;
use nubis_api::agent::{FloatingIpSpec, NetworkSpec, RuleRemote, RuleSpec};
use nubis_api::security_groups::{Direction, Protocol};
use std::net::Ipv4Addr;

/// The table Nubis owns; nothing else in the host's ruleset is touched.
pub const TABLE: &str = "nubis";

/// An instance's port as the firewall sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub tap: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    /// The gateway of the port's network (DHCP, DNS).
    pub gateway: Ipv4Addr,
    /// The rules of every security group of the port's instance.
    pub rules: Vec<RuleSpec>,
}

/// A network's VXLAN port as the firewall sees it: what must not cross it,
/// so that each host alone serves its own guests (the gateway is on every
/// host, with the same addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayPort {
    /// The VXLAN device (`nvx-...`).
    pub device: String,
    pub gateway: Ipv4Addr,
    /// The bridge's (gateway's) MAC, the same on every host.
    pub gateway_mac: String,
}

/// How replies are recognised in the bridge table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracking {
    /// Connection tracking works in the bridge family (`nf_conntrack_bridge`).
    Stateful,
    /// No bridge conntrack: replies are approximated (TCP without a new SYN,
    /// ICMP replies and errors, DHCP and DNS from the gateway).
    Stateless,
}

/// The host's whole ruleset: routing rules and the fence between guests
/// and the host (`inet nubis`), and per-port anti-spoofing and security
/// groups (`bridge nubis`). Only generated names, validated prefixes,
/// addresses and numbers go into it.
pub fn ruleset(
    networks: &[NetworkSpec],
    ports: &[Port],
    overlays: &[OverlayPort],
    floating: &[FloatingIpSpec],
    fence: &Fence,
    tracking: Tracking,
) -> String {
    format!(
        "{}{}",
        inet_table(networks, floating, fence),
        bridge_table(ports, overlays, tracking)
    )
}

/// The address guests ask for their metadata, as in EC2 and OpenStack.
pub const METADATA_ADDRESS: &str = "169.254.169.254";

/// The match of one rule (without the verdict), or `None` if it can match
/// nothing (a remote group with no members).
fn rule_match(rule: &RuleSpec) -> Option<String> {
    let peer = match rule.direction {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    let mut m = String::from("ether type ip");
    match &rule.remote {
        RuleRemote::Cidr(p) if p.len == 0 => {}
        RuleRemote::Cidr(p) => m.push_str(&format!(" ip {peer} {p}")),
        RuleRemote::Addresses(a) if a.is_empty() => return None,
        RuleRemote::Addresses(a) => {
            let set: Vec<String> = a.iter().map(Ipv4Addr::to_string).collect();
            m.push_str(&format!(" ip {peer} {{ {} }}", set.join(", ")));
        }
    }
    let ports = |proto: &str| match rule.ports {
        Some((lo, hi)) if lo == hi => format!(" {proto} dport {lo}"),
        Some((lo, hi)) => format!(" {proto} dport {lo}-{hi}"),
        None => format!(" meta l4proto {proto}"),
    };
    match rule.protocol {
        Protocol::Tcp => m.push_str(&ports("tcp")),
        Protocol::Udp => m.push_str(&ports("udp")),
        Protocol::Icmp => m.push_str(" meta l4proto icmp"),
        Protocol::Any => {}
    }
    Some(m)
}

/// What counts as a reply to traffic the other side started.
fn replies(tracking: Tracking) -> &'static str {
    match tracking {
        Tracking::Stateful => "        ct state established,related accept\n",
        Tracking::Stateless => {
            "        ether type ip tcp flags & (syn | ack) != syn accept\n\
             \x20       ether type ip icmp type { echo-reply, destination-unreachable, time-exceeded, parameter-problem } accept\n"
        }
    }
}

fn bridge_table(ports: &[Port], overlays: &[OverlayPort], tracking: Tracking) -> String {
    let mut from = String::new();
    let mut to = String::new();
    let mut chains = String::new();
    for (i, o) in overlays.iter().enumerate() {
        from.push_str(&format!(
            "        iifname \"{}\" jump overlay{i}\n",
            o.device
        ));
        to.push_str(&format!(
            "        oifname \"{}\" jump overlay{i}\n",
            o.device
        ));
        // Both ways: nothing from or to the gateway (its MAC, ARP for its
        // address: each host answers its own guests), and no DHCP.
        chains.push_str(&format!(
            "    chain overlay{i} {{\n\
             \x20       ether saddr {mac} drop\n\
             \x20       ether daddr {mac} drop\n\
             \x20       ether type arp arp saddr ip {gw} drop\n\
             \x20       ether type arp arp daddr ip {gw} drop\n\
             \x20       ether type ip udp dport {{ 67, 68 }} drop\n\
             \x20   }}\n",
            mac = o.gateway_mac,
            gw = o.gateway,
        ));
    }
    for (i, p) in ports.iter().enumerate() {
        from.push_str(&format!("        iifname \"{}\" jump from{i}\n", p.tap));
        to.push_str(&format!("        oifname \"{}\" jump to{i}\n", p.tap));
        let rules = |d: Direction| -> String {
            p.rules
                .iter()
                .filter(|r| r.direction == d)
                .filter_map(rule_match)
                .map(|m| format!("        {m} accept\n"))
                .collect()
        };
        // From the guest: anti-spoofing first (own MAC; ARP and IPv4 only
        // from its own address, DHCP discovery aside), then egress rules.
        chains.push_str(&format!(
            "    chain from{i} {{\n\
             \x20       ether saddr != {mac} drop\n\
             \x20       ether type arp arp saddr ether != {mac} drop\n\
             \x20       ether type arp arp saddr ip != {{ {ip}, 0.0.0.0 }} drop\n\
             \x20       ether type arp accept\n\
             \x20       ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n\
             \x20       ether type != ip drop\n\
             \x20       ip saddr != {ip} drop\n\
             {replies}\
             \x20       ip daddr {gw} udp dport {{ 53, 67 }} accept\n\
             \x20       ip daddr {gw} tcp dport 53 accept\n\
             \x20       ip daddr {METADATA_ADDRESS} tcp dport 80 accept\n\
             {egress}\
             \x20       drop\n\
             \x20   }}\n\
             \x20   chain to{i} {{\n\
             \x20       ether type arp accept\n\
             {replies}\
             \x20       ether type ip udp sport 67 udp dport 68 accept\n\
             \x20       ether type ip ip saddr {gw} udp sport 53 accept\n\
             {ingress}\
             \x20       drop\n\
             \x20   }}\n",
            mac = p.mac,
            ip = p.ip,
            gw = p.gateway,
            replies = replies(tracking),
            egress = rules(Direction::Egress),
            ingress = rules(Direction::Ingress),
        ));
    }
    let chains = [
        chain(
            "prerouting",
            "filter hook prerouting priority filter",
            &from,
        ),
        chain("forward", "filter hook forward priority filter", &to),
        chain("output", "filter hook output priority filter", &to),
        chains,
    ];
    table("bridge", &chains.concat())
}

/// Whether this kernel tracks connections in the bridge family.
pub async fn probe_tracking() -> Tracking {
    let probe = "table bridge nubis_probe {\n chain c {\n  ct state established accept\n }\n}\n\
                 delete table bridge nubis_probe\n";
    match run_with_input("nft", &["-f", "-"], probe).await {
        Ok(()) => Tracking::Stateful,
        Err(_) => Tracking::Stateless,
    }
}

/// The match of traffic routed out of the host, which NAT applies to. Where
/// `br_netfilter` passes bridged frames through the IP hooks too
/// (`net.bridge.bridge-nf-call-iptables = 1`), a frame between two guests
/// of a network shows its bridge port (a TAP or VXLAN device) as output
/// interface: it must not be NATed (masquerading to a port without an
/// address drops it).
const LEAVES_HOST: &str = r#"oifname != "nbr-*" oifname != "ntap-*" oifname != "nvx-*""#;

fn inet_table(networks: &[NetworkSpec], floating: &[FloatingIpSpec], fence: &Fence) -> String {
    let metadata_port = fence.metadata_port;
    // Metadata requests from guests go to the service on the gateway
    // address of the bridge they arrive on; the service is reachable from
    // instance bridges only.
    let mut dnat = format!(
        "        iifname \"{BRIDGE_PREFIX}*\" ip daddr {METADATA_ADDRESS} tcp dport 80 redirect to :{metadata_port}\n"
    );
    let mut nat = String::new();
    let mut floating_dnat = String::new();
    for f in floating {
        floating_dnat.push_str(&format!(
            "        ip daddr {} dnat ip to {}\n",
            f.ip, f.fixed_ip
        ));
        // 1:1 NAT: in to the instance, and the instance's traffic out as the
        // floating address (before the general masquerade below).
        dnat.push_str(&format!(
            "        ip daddr {} dnat ip to {}\n",
            f.ip, f.fixed_ip
        ));
        nat.push_str(&format!(
            "        ip saddr {} {LEAVES_HOST} snat ip to {}\n",
            f.fixed_ip, f.ip
        ));
    }
    for n in networks {
        // Outbound NAT: instance traffic leaving through anything but an
        // instance bridge takes the host's address.
        nat.push_str(&format!(
            "        ip saddr {} {LEAVES_HOST} masquerade\n",
            n.cidr
        ));
    }
    let input = format!(
        "        tcp dport {metadata_port} iifname != \"{BRIDGE_PREFIX}*\" drop\n{}",
        fence.input_rules()
    );
    // Where `br_netfilter` passes bridged frames through the IP hooks, a
    // frame between two guests of one network (or a guest and its VXLAN
    // port) shows that network's bridge as both interfaces: it is switched,
    // not routed, and the bridge table has filtered it already.
    let switched: String = networks
        .iter()
        .map(|n| {
            let bridge = super::switch::bridge_name(n);
            format!("        iifname \"{bridge}\" oifname \"{bridge}\" accept\n")
        })
        .collect();
    let forward = format!(
        "{switched}\
         \x20       # Networks are isolated from each other: nothing is routed between bridges.\n\
         \x20       iifname \"{BRIDGE_PREFIX}*\" oifname \"{BRIDGE_PREFIX}*\" drop\n{}",
        fence.forward_rules()
    );
    let chains = [
        chain("input", "filter hook input priority filter", &input),
        chain("forward", "filter hook forward priority filter", &forward),
        chain("prerouting", "nat hook prerouting priority dstnat", &dnat),
        chain("output", "nat hook output priority -100", &floating_dnat),
        chain("postrouting", "nat hook postrouting priority srcnat", &nat),
        fence.definitions(networks),
    ];
    table("inet", &chains.concat())
}

/// Declares and deletes our table of `family`: declaring first makes the
/// delete succeed even when the table does not exist yet.
fn drop_table(family: &str) -> String {
    format!("table {family} {TABLE}\ndelete table {family} {TABLE}\n")
}

/// Our table of `family` with `chains`, replacing the old one: loaded in one
/// `nft -f` transaction, the rules change atomically.
fn table(family: &str, chains: &str) -> String {
    format!(
        "{}table {family} {TABLE} {{\n{chains}}}\n",
        drop_table(family)
    )
}

/// A base chain attached to a hook (`hook` is e.g. `filter hook forward
/// priority filter`), accepting what `body` does not decide.
fn chain(name: &str, hook: &str, body: &str) -> String {
    format!("    chain {name} {{\n        type {hook}; policy accept;\n{body}    }}\n")
}

/// Loads the ruleset in one transaction (`nft -f -`).
pub async fn apply(ruleset: &str) -> anyhow::Result<()> {
    run_with_input("nft", &["-f", "-"], ruleset).await
}

/// Removes both tables (when no network is left on the host).
pub async fn clear() -> anyhow::Result<()> {
    run_with_input(
        "nft",
        &["-f", "-"],
        &format!("{}{}", drop_table("inet"), drop_table("bridge")),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules of every kind: any-prefix, group members, ports, an empty group.
    fn sample_rules() -> Vec<RuleSpec> {
        let cidr = |s: &str| RuleRemote::Cidr(s.parse().unwrap());
        vec![
            RuleSpec {
                direction: Direction::Egress,
                protocol: Protocol::Any,
                ports: None,
                remote: cidr("0.0.0.0/0"),
            },
            RuleSpec {
                direction: Direction::Ingress,
                protocol: Protocol::Tcp,
                ports: Some((22, 22)),
                remote: cidr("0.0.0.0/0"),
            },
            RuleSpec {
                direction: Direction::Ingress,
                protocol: Protocol::Icmp,
                ports: None,
                remote: cidr("0.0.0.0/0"),
            },
            RuleSpec {
                direction: Direction::Ingress,
                protocol: Protocol::Any,
                ports: None,
                remote: RuleRemote::Addresses(vec![
                    "10.9.0.7".parse().unwrap(),
                    "10.9.0.8".parse().unwrap(),
                ]),
            },
            RuleSpec {
                direction: Direction::Ingress,
                protocol: Protocol::Udp,
                ports: Some((1000, 2000)),
                remote: cidr("192.0.2.0/24"),
            },
            RuleSpec {
                direction: Direction::Ingress,
                protocol: Protocol::Any,
                ports: None,
                remote: RuleRemote::Addresses(vec![]),
            },
        ]
    }

    #[test]
    fn ruleset_names_only_generated_values() {
        let n = NetworkSpec {
            id: nubis_api::NetworkId::new(),
            cidr: "10.9.0.0/24".parse().unwrap(),
            gateway: "10.9.0.1".parse().unwrap(),
            domain: "alice.nubis.internal".into(),
        };
        let port = Port {
            tap: "ntap-12345678".into(),
            mac: "52:54:00:aa:bb:cc".into(),
            ip: "10.9.0.5".parse().unwrap(),
            gateway: "10.9.0.1".parse().unwrap(),
            rules: sample_rules(),
        };
        let fip = FloatingIpSpec {
            ip: "203.0.113.10".parse().unwrap(),
            fixed_ip: "10.9.0.5".parse().unwrap(),
        };
        let r = ruleset(
            std::slice::from_ref(&n),
            &[port],
            &[overlay_port()],
            &[fip],
            &fence(),
            Tracking::Stateless,
        );
        assert!(r.contains("ip daddr 169.254.169.254 tcp dport 80 redirect to :8775"));
        assert!(r.contains("tcp dport 8775 iifname != \"nbr-*\" drop"));
        assert!(r.contains("ip daddr 203.0.113.10 dnat ip to 10.9.0.5"));
        assert!(r.contains(&format!(
            "ip saddr 10.9.0.5 {LEAVES_HOST} snat ip to 203.0.113.10"
        )));
        assert!(
            r.find("snat ip to").unwrap() < r.find("masquerade").unwrap(),
            "1:1 NAT before masquerade"
        );
        assert!(r.contains(&format!("ip saddr 10.9.0.0/24 {LEAVES_HOST} masquerade")));
        assert!(r.starts_with("table inet nubis\ndelete table inet nubis\n"));
        assert!(r.contains("iifname \"nbr-*\" oifname \"nbr-*\" drop"));
        let own = super::super::switch::bridge_name(&n);
        let switched = format!("iifname \"{own}\" oifname \"{own}\" accept");
        assert!(
            r.find(&switched).unwrap() < r.find("oifname \"nbr-*\" drop").unwrap(),
            "a network's own switched frames pass before the isolation drop: {r}"
        );
        assert!(r.contains("iifname \"ntap-12345678\" jump from0"));
        assert!(r.contains("oifname \"ntap-12345678\" jump to0"));
        assert!(r.contains("ether type ip tcp dport 22 accept"), "{r}");
        assert!(
            r.contains("ether type ip ip saddr { 10.9.0.7, 10.9.0.8 } accept"),
            "{r}"
        );
        assert!(
            r.contains("ether type ip ip saddr 192.0.2.0/24 udp dport 1000-2000 accept"),
            "{r}"
        );
        let bridge = &r[r.find("table bridge").unwrap()..];
        assert!(
            !bridge.contains("ct state"),
            "stateless mode has no bridge conntrack"
        );
        let stateful = ruleset(&[], &[], &[], &[], &fence(), Tracking::Stateful);
        let stateful_bridge = &stateful[stateful.find("table bridge").unwrap()..];
        assert!(
            !stateful_bridge.contains("jump"),
            "no ports, no port chains"
        );
        assert!(r.contains("ether saddr != 52:54:00:aa:bb:cc drop"));
        assert!(r.contains("ip saddr != 10.9.0.5 drop"));
        // The fence: guests' traffic to the host goes through its chain,
        // management ranges are dropped in forward.
        assert!(r.contains("iifname \"nbr-*\" jump guest_to_host"), "{r}");
        assert!(r.contains("chain guest_to_host {"), "{r}");
        assert!(r.contains("ip daddr @management drop"), "{r}");
    }

    /// The VXLAN port of the tests' network.
    fn overlay_port() -> OverlayPort {
        OverlayPort {
            device: "nvx-12345678".into(),
            gateway: "10.9.0.1".parse().unwrap(),
            gateway_mac: "02:12:34:56:78:9a".into(),
        }
    }

    #[test]
    fn the_gateway_and_dhcp_never_cross_a_vxlan_port() {
        let r = ruleset(
            &[],
            &[],
            &[overlay_port()],
            &[],
            &fence(),
            Tracking::Stateful,
        );
        let bridge = &r[r.find("table bridge").unwrap()..];
        assert!(
            bridge.contains("iifname \"nvx-12345678\" jump overlay0"),
            "{bridge}"
        );
        assert!(
            bridge.contains("oifname \"nvx-12345678\" jump overlay0"),
            "{bridge}"
        );
        for rule in [
            "ether saddr 02:12:34:56:78:9a drop",
            "ether daddr 02:12:34:56:78:9a drop",
            "ether type arp arp saddr ip 10.9.0.1 drop",
            "ether type arp arp daddr ip 10.9.0.1 drop",
            "ether type ip udp dport { 67, 68 } drop",
        ] {
            assert!(bridge.contains(rule), "missing {rule:?} in {bridge}");
        }
        // Positive control: without VXLAN ports, no such chain.
        let plain = ruleset(&[], &[], &[], &[], &fence(), Tracking::Stateful);
        assert!(!plain.contains("overlay0"), "{plain}");
    }

    /// The fence of the tests: two overlapping management ranges.
    fn fence() -> Fence {
        Fence {
            metadata_port: 8775,
            management: vec![
                "192.0.2.0/24".parse().unwrap(),
                "192.0.2.128/25".parse().unwrap(),
            ],
        }
    }

    /// Loads the generated ruleset into a real nftables, inside a network
    /// namespace of its own, so syntax errors cannot hide.
    #[test]
    fn ruleset_loads_into_nftables() {
        let ns = format!("nubis-fw-{}", std::process::id());
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
        };
        if !ip(&["netns", "add", &ns]).unwrap_or(false) {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot create a network namespace in CI"
            );
            eprintln!("no network namespaces here: skipping");
            return;
        }
        let n = NetworkSpec {
            id: nubis_api::NetworkId::new(),
            cidr: "10.9.0.0/24".parse().unwrap(),
            gateway: "10.9.0.1".parse().unwrap(),
            domain: "a.example".into(),
        };
        let ports = [Port {
            tap: "ntap-1".into(),
            mac: "52:54:00:00:00:01".into(),
            ip: "10.9.0.5".parse().unwrap(),
            gateway: "10.9.0.1".parse().unwrap(),
            rules: sample_rules(),
        }];
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                ruleset(
                    &[n],
                    &ports,
                    &[overlay_port()],
                    &[FloatingIpSpec {
                        ip: "203.0.113.10".parse().unwrap(),
                        fixed_ip: "10.9.0.5".parse().unwrap(),
                    }],
                    &fence(),
                    Tracking::Stateless,
                )
                .as_bytes(),
            )
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let _ = ip(&["netns", "del", &ns]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
