//! The host's nftables rules for instance networks, in one table Nubis owns
//! (`inet nubis`), replaced atomically as a whole whenever they change.

use super::command::run_with_input;
use super::switch::BRIDGE_PREFIX;
use nubis_api::agent::NetworkSpec;

/// The table Nubis owns; nothing else in the host's ruleset is touched.
pub const TABLE: &str = "nubis";

/// The ruleset for the networks on this host. Only generated names and
/// validated CIDRs go into it.
pub fn ruleset(networks: &[NetworkSpec]) -> String {
    let mut nat = String::new();
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
         \x20   chain forward {{\n\
         \x20       type filter hook forward priority filter; policy accept;\n\
         \x20       # Networks are isolated from each other: nothing is routed between bridges.\n\
         \x20       iifname \"{BRIDGE_PREFIX}*\" oifname \"{BRIDGE_PREFIX}*\" drop\n\
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

/// Removes the table (when no network is left on the host).
pub async fn clear() -> anyhow::Result<()> {
    run_with_input(
        "nft",
        &["-f", "-"],
        &format!("table inet {TABLE}\ndelete table inet {TABLE}\n"),
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
        let r = ruleset(&[n]);
        assert!(r.contains("ip saddr 10.9.0.0/24 oifname != \"nbr-*\" masquerade"));
        assert!(r.starts_with("table inet nubis\ndelete table inet nubis\n"));
        assert!(r.contains("iifname \"nbr-*\" oifname \"nbr-*\" drop"));
    }
}
