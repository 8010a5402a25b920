//! Networks across hosts: a VXLAN device per network on its bridge, sending
//! unicast to the other hosts that have ports on the network, as the
//! controller lists them (no multicast group, no flooding to hosts without
//! the network).
//!
//! The device is made with `nolearning` and its forwarding database (FDB)
//! holds only static entries from desired state: one all-zero MAC entry per
//! peer host (broadcast and unknown unicast, e.g. ARP requests, are
//! replicated to each peer) and one entry per remote port's MAC (unicast
//! goes straight to its host). Why static MACs and no learning: the
//! controller knows where every port is, so nothing needs flooding to be
//! found; a MAC that moves (a migrated server) moves with the next desired
//! state instead of after an ageing timeout; and a frame cannot teach the
//! host where a MAC lives (a forged source MAC from the underlay redirects
//! nothing).
//!
//! A network whose ports are all on this host has no device: nothing
//! changes for one-host clouds. Every host has the network's gateway on its
//! bridge with the same MAC ([`gateway_mac`]); the firewall keeps the
//! gateway, DHCP and the host's services off the VXLAN port (see
//! `firewall.rs`), so each guest is served by its own host.

use super::command::{ip_batch, links_with_prefix, run, run_with_input};
use anyhow::Context;
use nubis_api::agent::{HostNetwork, NetworkSpec, Overlay};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Interface-name prefix of VXLAN devices (names fit IFNAMSIZ: 15 bytes).
pub const VXLAN_PREFIX: &str = "nvx-";

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;

/// Bytes VXLAN adds to each frame over IPv4 (outer IP 20, UDP 8, VXLAN 8,
/// inner Ethernet 14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// The MAC that stands for "any destination" in a VXLAN FDB.
const ZERO_MAC: &str = "00:00:00:00:00:00";

/// This host's end of the tunnels: its underlay address, and the MTU of the
/// underlay device that address is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    pub local: Ipv4Addr,
    pub underlay_mtu: u32,
}

impl Tunnel {
    /// The MTU of the VXLAN devices, and what guests are told (DHCP option
    /// 26) on every network, spanning hosts or not: a network may start to
    /// span hosts at any time, and a guest does not learn a new MTU before
    /// it renews its lease.
    pub fn guest_mtu(&self) -> u32 {
        self.underlay_mtu.saturating_sub(VXLAN_OVERHEAD).max(576)
    }
}

/// The guest MTU when the host has no tunnel: the same as on a host with a
/// standard 1500-byte underlay, so guests see one MTU everywhere.
pub const DEFAULT_GUEST_MTU: u32 = 1500 - VXLAN_OVERHEAD;

/// The VXLAN device of a network: `nvx-` and the first 8 hex digits of its id.
pub fn vxlan_name(network: &NetworkSpec) -> String {
    format!("{VXLAN_PREFIX}{}", &network.id.0.simple().to_string()[..8])
}

/// The MAC of a network's bridge (its gateway) on every host: locally
/// administered, unicast, made from the network's id, so a guest that
/// moves between hosts finds its gateway at the same MAC.
pub fn gateway_mac(network: &NetworkSpec) -> String {
    let b = network.id.0.as_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// The (MAC, peer address) entries a network's VXLAN FDB must hold: an
/// all-zero MAC per peer, and each remote port's MAC at its host.
pub fn wanted_fdb(overlay: &Overlay) -> BTreeSet<(String, Ipv4Addr)> {
    let mut entries = BTreeSet::new();
    for peer in &overlay.peers {
        entries.insert((ZERO_MAC.to_owned(), peer.tunnel_ip));
        for mac in &peer.macs {
            entries.insert((mac.to_lowercase(), peer.tunnel_ip));
        }
    }
    entries
}

/// A VXLAN FDB entry: a MAC (all zeros: any) and the peer it is sent to.
pub type FdbEntry = (String, Ipv4Addr);

/// What to add and what to remove to turn `present` into `wanted`.
pub fn fdb_changes(
    present: &BTreeSet<FdbEntry>,
    wanted: &BTreeSet<FdbEntry>,
) -> (Vec<FdbEntry>, Vec<FdbEntry>) {
    (
        wanted.difference(present).cloned().collect(),
        present.difference(wanted).cloned().collect(),
    )
}

/// The networks that need a VXLAN device here: those with peers.
pub fn spanning(networks: &[HostNetwork]) -> impl Iterator<Item = (&NetworkSpec, &Overlay)> {
    networks.iter().filter_map(|n| {
        n.overlay
            .as_ref()
            .filter(|o| !o.peers.is_empty())
            .map(|o| (&n.spec, o))
    })
}

/// Finds this host's tunnel end: `explicit` (`--tunnel-ip`) if given, else
/// the source address of the route to `controller` (an address or name
/// from the agent's controller URL). `None` when that is a loopback
/// address (a one-host cloud) or cannot be found.
pub async fn find_tunnel(explicit: Option<Ipv4Addr>, controller: &str) -> Option<Tunnel> {
    let found = match explicit {
        Some(ip) => device_with_address(ip).await.map(|dev| (ip, dev)),
        None => route_source(controller).await,
    };
    match found {
        Ok((local, _)) if local.is_loopback() || local.is_unspecified() => {
            tracing::info!(%local, "no tunnel address (the controller is on this host): networks stay on this host");
            None
        }
        Ok((local, device)) => {
            let underlay_mtu = device_mtu(&device).await.unwrap_or(1500);
            tracing::info!(%local, %device, underlay_mtu, "tunnel address for networks across hosts");
            Some(Tunnel {
                local,
                underlay_mtu,
            })
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no tunnel address: networks stay on this host");
            None
        }
    }
}

/// The source address and device of the route to `host` (IP or name).
async fn route_source(host: &str) -> anyhow::Result<(Ipv4Addr, String)> {
    let ip: Ipv4Addr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => tokio::net::lookup_host((host, 0))
            .await
            .with_context(|| format!("resolving {host}"))?
            .find_map(|a| match a.ip() {
                std::net::IpAddr::V4(ip) => Some(ip),
                std::net::IpAddr::V6(_) => None,
            })
            .with_context(|| format!("{host} has no IPv4 address"))?,
    };
    let json = run("ip", &["-j", "route", "get", &ip.to_string()]).await?;
    let routes: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    let route = routes.first().context("no route to the controller")?;
    let src = route["prefsrc"]
        .as_str()
        .context("the route to the controller has no source address")?;
    Ok((
        src.parse()?,
        route["dev"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// The device that has address `ip`.
async fn device_with_address(ip: Ipv4Addr) -> anyhow::Result<String> {
    let json = run("ip", &["-j", "-4", "addr", "show"]).await?;
    let links: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    links
        .iter()
        .find(|l| {
            l["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["local"] == ip.to_string().as_str())
        })
        .and_then(|l| l["ifname"].as_str().map(str::to_owned))
        .with_context(|| format!("--tunnel-ip {ip} is not an address of this host"))
}

async fn device_mtu(device: &str) -> anyhow::Result<u32> {
    let json = run("ip", &["-j", "link", "show", "dev", device]).await?;
    let links: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    links
        .first()
        .and_then(|l| l["mtu"].as_u64())
        .map(|m| m as u32)
        .context("no MTU")
}

/// Makes the VXLAN devices of the networks that span hosts exist on their
/// bridges (which must exist) with exactly the FDB entries of their peers,
/// and removes every other VXLAN device of ours. Without a tunnel, removes
/// them all.
pub async fn converge(networks: &[HostNetwork], tunnel: Option<Tunnel>) -> anyhow::Result<()> {
    let mut wanted_devices = BTreeSet::new();
    if let Some(tunnel) = tunnel {
        for (spec, overlay) in spanning(networks) {
            let name = vxlan_name(spec);
            ensure_device(&name, spec, overlay.vni, tunnel).await?;
            converge_fdb(&name, &wanted_fdb(overlay)).await?;
            wanted_devices.insert(name);
        }
    }
    for name in links_with_prefix(VXLAN_PREFIX).await? {
        if !wanted_devices.contains(&name) {
            run("ip", &["link", "del", &name]).await?;
            tracing::info!(device = %name, "VXLAN device removed");
        }
    }
    Ok(())
}

/// Makes `name` a VXLAN device of `vni` from `tunnel.local`, on the
/// network's bridge, up; one with other parameters is made again.
async fn ensure_device(
    name: &str,
    network: &NetworkSpec,
    vni: u32,
    tunnel: Tunnel,
) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    match device_parameters(name).await? {
        Some((id, local)) if id == vni && local == Some(tunnel.local) => {}
        present => {
            if present.is_some() {
                lines.push(format!("link del {name}"));
            }
            lines.push(format!(
                "link add {name} type vxlan id {vni} local {} dstport {VXLAN_PORT} nolearning",
                tunnel.local
            ));
            tracing::info!(device = %name, vni, local = %tunnel.local, "VXLAN device made");
        }
    }
    lines.push(format!(
        "link set {name} mtu {} master {} up",
        tunnel.guest_mtu(),
        super::switch::bridge_name(network)
    ));
    ip_batch(&lines, false).await
}

/// The VNI and local address of VXLAN device `name`, if it exists.
async fn device_parameters(name: &str) -> anyhow::Result<Option<(u32, Option<Ipv4Addr>)>> {
    if !super::command::link_exists(name).await {
        return Ok(None);
    }
    let json = run("ip", &["-d", "-j", "link", "show", "dev", name]).await?;
    let links: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    let data = &links.first().context("no such link")?["linkinfo"]["info_data"];
    let id = data["id"].as_u64().unwrap_or(0) as u32;
    let local = data["local"].as_str().and_then(|s| s.parse().ok());
    Ok(Some((id, local)))
}

/// The static entries (those with a peer address) of a VXLAN device's FDB.
async fn present_fdb(name: &str) -> anyhow::Result<BTreeSet<(String, Ipv4Addr)>> {
    let json = run("bridge", &["-j", "fdb", "show", "dev", name]).await?;
    Ok(parse_fdb(&json))
}

/// (MAC, peer) of every entry with a `dst` in `bridge -j fdb show` output.
fn parse_fdb(json: &str) -> BTreeSet<(String, Ipv4Addr)> {
    let entries: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| {
            let mac = e["mac"].as_str()?.to_lowercase();
            let dst = e["dst"].as_str()?.parse().ok()?;
            Some((mac, dst))
        })
        .collect()
}

/// Adds the missing entries and removes the stale ones.
async fn converge_fdb(name: &str, wanted: &BTreeSet<(String, Ipv4Addr)>) -> anyhow::Result<()> {
    let (add, remove) = fdb_changes(&present_fdb(name).await?, wanted);
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    let mut input = String::new();
    for (mac, dst) in &add {
        input.push_str(&format!(
            "fdb append {mac} dev {name} dst {dst} self permanent\n"
        ));
    }
    for (mac, dst) in &remove {
        input.push_str(&format!("fdb del {mac} dev {name} dst {dst} self\n"));
    }
    run_with_input("bridge", &["-batch", "-"], &input)
        .await
        .with_context(|| format!("updating the FDB of {name}"))?;
    tracing::info!(device = %name, added = add.len(), removed = remove.len(), "VXLAN peers converged");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubis_api::agent::OverlayPeer;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn spec() -> NetworkSpec {
        NetworkSpec {
            id: nubis_api::NetworkId::new(),
            cidr: "10.9.0.0/24".parse().unwrap(),
            gateway: "10.9.0.1".parse().unwrap(),
            domain: "a.example".into(),
        }
    }

    #[test]
    fn each_peer_gets_a_flood_entry_and_each_remote_mac_its_host() {
        let overlay = Overlay {
            vni: 7,
            peers: vec![
                OverlayPeer {
                    tunnel_ip: ip("172.31.0.12"),
                    macs: vec!["52:54:00:00:00:0A".into()],
                },
                OverlayPeer {
                    tunnel_ip: ip("172.31.0.13"),
                    macs: vec![],
                },
            ],
        };
        let wanted = wanted_fdb(&overlay);
        let expect: BTreeSet<(String, Ipv4Addr)> = [
            (ZERO_MAC.to_owned(), ip("172.31.0.12")),
            ("52:54:00:00:00:0a".to_owned(), ip("172.31.0.12")),
            (ZERO_MAC.to_owned(), ip("172.31.0.13")),
        ]
        .into();
        assert_eq!(wanted, expect);
        assert!(wanted_fdb(&Overlay {
            vni: 7,
            peers: vec![]
        })
        .is_empty());
    }

    #[test]
    fn fdb_changes_add_the_missing_and_remove_the_stale() {
        let e = |m: &str, i: &str| (m.to_owned(), ip(i));
        let present: BTreeSet<_> = [
            e(ZERO_MAC, "172.31.0.12"),
            e("52:54:00:00:00:0a", "172.31.0.12"), // moved to .13
            e(ZERO_MAC, "172.31.0.14"),            // host left the network
        ]
        .into();
        let wanted: BTreeSet<_> = [
            e(ZERO_MAC, "172.31.0.12"),
            e(ZERO_MAC, "172.31.0.13"),
            e("52:54:00:00:00:0a", "172.31.0.13"),
        ]
        .into();
        let (add, remove) = fdb_changes(&present, &wanted);
        assert_eq!(
            add,
            vec![
                e(ZERO_MAC, "172.31.0.13"),
                e("52:54:00:00:00:0a", "172.31.0.13")
            ]
        );
        assert_eq!(
            remove,
            vec![
                e(ZERO_MAC, "172.31.0.14"),
                e("52:54:00:00:00:0a", "172.31.0.12")
            ]
        );
        // Converged: nothing to do.
        let (add, remove) = fdb_changes(&wanted, &wanted);
        assert!(add.is_empty() && remove.is_empty());
    }

    #[test]
    fn bridge_fdb_output_is_read_for_entries_with_a_peer_only() {
        let json = r#"[
            {"mac":"00:00:00:00:00:00","dst":"172.31.0.12","flags":["self"],"state":"permanent"},
            {"mac":"52:54:00:AA:00:01","dst":"172.31.0.13","flags":["self"],"state":"permanent"},
            {"mac":"de:ad:be:ef:00:01","master":"nbr-1234abcd","state":"permanent"}
        ]"#;
        let parsed = parse_fdb(json);
        assert_eq!(parsed.len(), 2, "{parsed:?}");
        assert!(parsed.contains(&("52:54:00:aa:00:01".to_owned(), ip("172.31.0.13"))));
        assert!(parse_fdb("not json").is_empty());
    }

    #[test]
    fn names_and_gateway_macs_follow_the_network_id() {
        let (a, b) = (spec(), spec());
        assert!(vxlan_name(&a).starts_with(VXLAN_PREFIX));
        assert!(vxlan_name(&a).len() <= 15);
        let mac = gateway_mac(&a);
        assert_eq!(mac, gateway_mac(&a.clone()), "the same on every host");
        assert_ne!(mac, gateway_mac(&b));
        assert!(
            mac.starts_with("02:"),
            "locally administered unicast: {mac}"
        );
        assert_eq!(mac.len(), 17);
    }

    #[test]
    fn only_networks_with_peers_span_hosts() {
        let with_peer = HostNetwork {
            spec: spec(),
            dns: vec![],
            overlay: Some(Overlay {
                vni: 1,
                peers: vec![OverlayPeer {
                    tunnel_ip: ip("172.31.0.12"),
                    macs: vec![],
                }],
            }),
        };
        let alone = HostNetwork {
            spec: spec(),
            dns: vec![],
            overlay: Some(Overlay {
                vni: 2,
                peers: vec![],
            }),
        };
        let old_controller = HostNetwork {
            spec: spec(),
            dns: vec![],
            overlay: None,
        };
        let nets = [with_peer.clone(), alone, old_controller];
        let spans: Vec<_> = spanning(&nets).map(|(s, _)| s.id).collect();
        assert_eq!(spans, vec![with_peer.spec.id]);
        let t = Tunnel {
            local: ip("172.31.0.11"),
            underlay_mtu: 1500,
        };
        assert_eq!(t.guest_mtu(), 1450);
        assert_eq!(DEFAULT_GUEST_MTU, 1450);
    }
}
