//! The fence between guests and the host: a guest may ask its gateway for
//! DHCP, DNS and metadata (and ping it), nothing else of the host, and may
//! not open connections to the operator's management ranges. Rendered
//! into the `inet nubis` table (see `firewall.rs`), so it is replaced
//! atomically with the rest of the rules and converges like them.
//!
//! "Any address of the host" is the input hook itself: a packet reaches it
//! exactly when the kernel's route lookup (what `fib daddr type local`
//! asks) delivers it locally, after DNAT. So every local address counts,
//! also ones added later by others (DHCP on the uplink, a docker bridge),
//! with no set to keep in step with the host; floating IPs, DNATed to
//! their guests before routing, go to the forward path as they should;
//! and the metadata redirect is told apart by its connection's original
//! destination. A `fib` rule in prerouting would have to run before DNAT
//! and except floating IPs by hand; a set of addresses would go stale
//! between two converge passes.
//!
//! Security groups cannot open the fence: they live in the `bridge nubis`
//! table, and an `accept` there only ends that table's chain, while a
//! `drop` here is final for the packet whatever any other chain says.

use super::firewall::METADATA_ADDRESS;
use super::switch::{bridge_name, BRIDGE_PREFIX};
use nubis_api::agent::NetworkSpec;
use nubis_api::security_groups::Prefix;

/// What the fence needs to know besides the networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fence {
    /// The port of the metadata service on the gateways (the target of the
    /// redirect of `169.254.169.254:80`).
    pub metadata_port: u16,
    /// Ranges guests must not open connections to (the operator's LAN,
    /// other hosts' agents and controllers, `--management-cidr`).
    pub management: Vec<Prefix>,
}

/// The chain every packet from a guest to the host goes through.
const GUEST_CHAIN: &str = "guest_to_host";
/// The set of management ranges.
const MANAGEMENT_SET: &str = "management";

impl Fence {
    /// Rules of the input base chain: everything arriving on an instance
    /// bridge for the host goes through the guest chain.
    pub fn input_rules(&self) -> String {
        format!("        iifname \"{BRIDGE_PREFIX}*\" jump {GUEST_CHAIN}\n")
    }

    /// Rules of the forward base chain: guests cannot open connections to
    /// management ranges (replies to connections opened from there pass).
    pub fn forward_rules(&self) -> String {
        if self.management.is_empty() {
            return String::new();
        }
        format!(
            "        iifname \"{BRIDGE_PREFIX}*\" ip daddr @{MANAGEMENT_SET} ct direction reply accept\n\
             \x20       iifname \"{BRIDGE_PREFIX}*\" ip daddr @{MANAGEMENT_SET} drop\n"
        )
    }

    /// The set and the non-base chain the rules above refer to.
    pub fn definitions(&self, networks: &[NetworkSpec]) -> String {
        format!("{}{}", self.management_set(), self.guest_chain(networks))
    }

    fn management_set(&self) -> String {
        if self.management.is_empty() {
            return String::new();
        }
        let elements: Vec<String> = self.management.iter().map(Prefix::to_string).collect();
        // auto-merge: overlapping ranges given by the operator are fine.
        format!(
            "    set {MANAGEMENT_SET} {{\n\
             \x20       type ipv4_addr; flags interval; auto-merge;\n\
             \x20       elements = {{ {} }}\n\
             \x20   }}\n",
            elements.join(", ")
        )
    }

    /// What a guest may send to the host; the rest is dropped.
    fn guest_chain(&self, networks: &[NetworkSpec]) -> String {
        let port = self.metadata_port;
        let mut body = String::from(
            "        # Replies to connections the host opened (ssh into a guest).\n\
             \x20       ct direction reply accept\n\
             \x20       ct state related accept\n",
        );
        // DHCP (broadcast before the guest has an address, unicast renewals),
        // DNS and ping only to the gateway of the network the packet comes
        // from: another network's dnsmasq would name another project's servers.
        for n in networks {
            let (bridge, gw) = (bridge_name(n), n.gateway);
            body.push_str(&format!(
                "        iifname \"{bridge}\" ip daddr {{ 255.255.255.255, {gw} }} udp sport 68 udp dport 67 accept\n\
                 \x20       iifname \"{bridge}\" ip daddr {gw} udp dport 53 accept\n\
                 \x20       iifname \"{bridge}\" ip daddr {gw} tcp dport 53 accept\n\
                 \x20       iifname \"{bridge}\" ip daddr {gw} icmp type echo-request accept\n"
            ));
        }
        body.push_str(&format!(
            "        # The metadata service, only through the redirect of {METADATA_ADDRESS}:80.\n\
             \x20       tcp dport {port} ct original ip daddr {METADATA_ADDRESS} ct original proto-dst 80 accept\n\
             \x20       drop\n"
        ));
        format!("    chain {GUEST_CHAIN} {{\n{body}    }}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(cidr: &str, gateway: &str) -> NetworkSpec {
        NetworkSpec {
            id: nubis_api::NetworkId::new(),
            cidr: cidr.parse().unwrap(),
            gateway: gateway.parse().unwrap(),
            domain: "a.example".into(),
        }
    }

    #[test]
    fn guests_reach_only_dhcp_dns_and_metadata_of_their_own_gateway() {
        let (a, b) = (
            network("10.9.0.0/24", "10.9.0.1"),
            network("10.8.0.0/24", "10.8.0.1"),
        );
        let fence = Fence {
            metadata_port: 8775,
            management: vec![],
        };
        let chain = fence.definitions(&[a.clone(), b.clone()]);
        let lines: Vec<&str> = chain.lines().map(str::trim).collect();
        let (bra, brb) = (bridge_name(&a), bridge_name(&b));
        for want in [
            "ct direction reply accept".to_owned(),
            format!(
                "iifname \"{bra}\" ip daddr {{ 255.255.255.255, 10.9.0.1 }} udp sport 68 udp dport 67 accept"
            ),
            format!("iifname \"{bra}\" ip daddr 10.9.0.1 udp dport 53 accept"),
            format!("iifname \"{bra}\" ip daddr 10.9.0.1 tcp dport 53 accept"),
            format!("iifname \"{brb}\" ip daddr 10.8.0.1 udp dport 53 accept"),
            format!("iifname \"{bra}\" ip daddr 10.9.0.1 icmp type echo-request accept"),
            "tcp dport 8775 ct original ip daddr 169.254.169.254 ct original proto-dst 80 accept"
                .to_owned(),
        ] {
            assert!(
                lines.contains(&want.as_str()),
                "missing {want:?} in\n{chain}"
            );
        }
        // Everything else is dropped: the chain ends with an unconditional drop.
        assert_eq!(lines[lines.len() - 2], "drop", "{chain}");
        // No rule accepts a port by itself (SSH, the agent, the controller).
        assert!(
            !lines
                .iter()
                .any(|l| l.ends_with("accept") && l.contains("dport") && !l.contains("daddr")),
            "{chain}"
        );
        assert!(!chain.contains("set management"), "no ranges, no set");
        assert_eq!(fence.forward_rules(), "");
        assert_eq!(
            fence.input_rules().trim(),
            "iifname \"nbr-*\" jump guest_to_host"
        );
    }

    #[test]
    fn management_ranges_are_a_set_guests_cannot_open_connections_to() {
        let fence = Fence {
            metadata_port: 8775,
            management: vec![
                "192.0.2.0/24".parse().unwrap(),
                "198.51.100.7".parse().unwrap(),
            ],
        };
        let defs = fence.definitions(&[]);
        assert!(
            defs.contains("elements = { 192.0.2.0/24, 198.51.100.7/32 }"),
            "{defs}"
        );
        assert!(defs.contains("flags interval; auto-merge;"), "{defs}");
        let forward = fence.forward_rules();
        let reply = forward.find("ct direction reply accept").unwrap();
        let drop = forward.find("ip daddr @management drop").unwrap();
        assert!(reply < drop, "replies pass before the drop:\n{forward}");
        // Same input, same text: reloading is skipped when nothing changed.
        assert_eq!(fence.definitions(&[]), defs);
    }
}
