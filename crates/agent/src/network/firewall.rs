//! The host's nftables rules for instance networks, in one table Nubis owns
//! (`inet nubis`), replaced atomically as a whole whenever they change.

use super::command::run_with_input;
use super::switch::BRIDGE_PREFIX;
use nubis_api::agent::{FloatingIpSpec, NetworkSpec};
use std::net::Ipv4Addr;

/// The table Nubis owns; nothing else in the host's ruleset is touched.
pub const TABLE: &str = "nubis";

/// An instance's port as the firewall sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub tap: String,
    pub mac: String,
    pub ip: Ipv4Addr,
}

/// The host's whole ruleset: routing rules (`inet nubis`) and per-port
/// anti-spoofing (`bridge nubis`). Only generated names, validated CIDRs
/// and addresses go into it.
pub fn ruleset(
    networks: &[NetworkSpec],
    ports: &[Port],
    floating: &[FloatingIpSpec],
    metadata_port: u16,
) -> String {
    format!(
        "{}{}",
        inet_table(networks, floating, metadata_port),
        bridge_table(ports)
    )
}

/// The address guests ask for their metadata, as in EC2 and OpenStack.
pub const METADATA_ADDRESS: &str = "169.254.169.254";

/// Anti-spoofing: a guest may only send frames from its own MAC, and IPv4
/// and ARP only from its own address (DHCP discovery from 0.0.0.0 aside).
/// Checked at bridge prerouting, so it covers traffic to other guests on
/// the bridge and to the host alike.
fn bridge_table(ports: &[Port]) -> String {
    let mut dispatch = String::new();
    let mut chains = String::new();
    for (i, p) in ports.iter().enumerate() {
        dispatch.push_str(&format!("        iifname \"{}\" jump port{i}\n", p.tap));
        chains.push_str(&format!(
            "    chain port{i} {{\n\
             \x20       ether saddr != {mac} drop\n\
             \x20       ether type arp arp saddr ether != {mac} drop\n\
             \x20       ether type arp arp saddr ip != {{ {ip}, 0.0.0.0 }} drop\n\
             \x20       ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n\
             \x20       ether type ip ip saddr != {ip} drop\n\
             \x20       ether type {{ ip, arp }} accept\n\
             \x20       drop\n\
             \x20   }}\n",
            mac = p.mac,
            ip = p.ip
        ));
    }
    format!(
        "table bridge {TABLE}\n\
         delete table bridge {TABLE}\n\
         table bridge {TABLE} {{\n\
         \x20   chain prerouting {{\n\
         \x20       type filter hook prerouting priority filter; policy accept;\n\
         {dispatch}\
         \x20   }}\n\
         {chains}\
         }}\n"
    )
}

fn inet_table(networks: &[NetworkSpec], floating: &[FloatingIpSpec], metadata_port: u16) -> String {
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
            "        ip saddr {} oifname != \"{BRIDGE_PREFIX}*\" snat ip to {}\n",
            f.fixed_ip, f.ip
        ));
    }
    for n in networks {
        // Outbound NAT: instance traffic leaving through anything but an
        // instance bridge takes the host's address.
        nat.push_str(&format!(
            "        ip saddr {} oifname != \"{BRIDGE_PREFIX}*\" masquerade\n",
            n.cidr
        ));
    }
    format!(
        "table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \x20   chain input {{\n\
         \x20       type filter hook input priority filter; policy accept;\n\
         \x20       tcp dport {metadata_port} iifname != \"{BRIDGE_PREFIX}*\" drop\n\
         \x20   }}\n\
         \x20   chain forward {{\n\
         \x20       type filter hook forward priority filter; policy accept;\n\
         \x20       # Networks are isolated from each other: nothing is routed between bridges.\n\
         \x20       iifname \"{BRIDGE_PREFIX}*\" oifname \"{BRIDGE_PREFIX}*\" drop\n\
         \x20   }}\n\
         \x20   chain prerouting {{\n\
         \x20       type nat hook prerouting priority dstnat; policy accept;\n\
         {dnat}\
         \x20   }}\n\
         \x20   chain output {{\n\
         \x20       type nat hook output priority -100; policy accept;\n\
         {floating_dnat}\
         \x20   }}\n\
         \x20   chain postrouting {{\n\
         \x20       type nat hook postrouting priority srcnat; policy accept;\n\
         {nat}\
         \x20   }}\n\
         }}\n"
    )
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
        &format!(
            "table inet {TABLE}\ndelete table inet {TABLE}\n\
             table bridge {TABLE}\ndelete table bridge {TABLE}\n"
        ),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let fip = FloatingIpSpec {
            ip: "203.0.113.10".parse().unwrap(),
            fixed_ip: "10.9.0.5".parse().unwrap(),
        };
        let r = ruleset(&[n], &[port], &[fip], 8775);
        assert!(r.contains("ip daddr 169.254.169.254 tcp dport 80 redirect to :8775"));
        assert!(r.contains("tcp dport 8775 iifname != \"nbr-*\" drop"));
        assert!(r.contains("ip daddr 203.0.113.10 dnat ip to 10.9.0.5"));
        assert!(r.contains("ip saddr 10.9.0.5 oifname != \"nbr-*\" snat ip to 203.0.113.10"));
        assert!(
            r.find("snat ip to").unwrap() < r.find("masquerade").unwrap(),
            "1:1 NAT before masquerade"
        );
        assert!(r.contains("ip saddr 10.9.0.0/24 oifname != \"nbr-*\" masquerade"));
        assert!(r.starts_with("table inet nubis\ndelete table inet nubis\n"));
        assert!(r.contains("iifname \"nbr-*\" oifname \"nbr-*\" drop"));
        assert!(r.contains("iifname \"ntap-12345678\" jump port0"));
        assert!(r.contains("ether saddr != 52:54:00:aa:bb:cc drop"));
        assert!(r.contains("ip saddr != 10.9.0.5 drop"));
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
                    &[FloatingIpSpec {
                        ip: "203.0.113.10".parse().unwrap(),
                        fixed_ip: "10.9.0.5".parse().unwrap(),
                    }],
                    8775,
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
