//! What this host offers (CPUs, memory, disk) and which addresses and
//! routes are its own (no tenant network may overlap them).

use anyhow::Context;
use nubis_api::agent::{HostAddress, HostAddressing, HostRoute};
use nubis_api::security_groups::Prefix;
use std::net::Ipv4Addr;
use std::path::Path;

/// The host's capacity as reported to the controller.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// Reads the host's capacity; disk is the size of the filesystem holding `data_dir`.
pub fn capacity(data_dir: &Path) -> Capacity {
    let vcpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(1024);
    let disk_gib = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| s.blocks() * s.fragment_size() / (1024 * 1024 * 1024))
        .unwrap_or(10);
    Capacity {
        vcpus,
        memory_mib,
        disk_gib,
    }
}

/// The CPU model (`model name` of the first processor in `/proc/cpuinfo`),
/// reported so administrators and placement can tell hosts apart; `None`
/// where the kernel does not say (some architectures have no such line).
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    model_name(&info)
}

fn model_name(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .filter(|m| !m.is_empty())
}

#[cfg(test)]
mod cpu_model_tests {
    use super::model_name;

    #[test]
    fn reads_the_first_model_name() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            model_name(info).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(model_name("processor : 0\n"), None);
        assert_eq!(model_name("model name :   \n"), None);
    }
}

/// Interfaces that are the agent's own: tenant networks' bridges and
/// guests' TAPs carry tenant ranges, not the host's.
const OWN_INTERFACE_PREFIXES: [&str; 2] = [
    crate::network::switch::BRIDGE_PREFIX,
    crate::network::tap::TAP_PREFIX,
];

/// The label of floating IPs on `lo` (tenants' public addresses, which the
/// controller already knows as floating-IP pools).
const FLOATING_LABEL: &str = "lo:nfip";

fn own_interface(device: &str) -> bool {
    OWN_INTERFACE_PREFIXES.iter().any(|p| device.starts_with(p))
}

/// Reads the host's IPv4 addresses and main-table routes (`ip -j addr`,
/// `ip -j route`), leaving out the agent's own bridges, TAPs and floating
/// IPs. Read at registration and about once per heartbeat, never while
/// creating a server.
pub async fn addressing() -> anyhow::Result<HostAddressing> {
    let addrs = crate::network::command::run("ip", &["-j", "-4", "addr", "show"]).await?;
    let routes = crate::network::command::run("ip", &["-j", "-4", "route", "show"]).await?;
    Ok(HostAddressing {
        addresses: parse_addresses(&addrs)?,
        routes: parse_routes(&routes)?,
    })
}

#[derive(serde::Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(serde::Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    family: String,
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: Option<u8>,
    #[serde(default)]
    label: Option<String>,
}

#[derive(serde::Deserialize)]
struct IpRoute {
    dst: String,
    #[serde(default)]
    dev: Option<String>,
}

/// The IPv4 addresses in `ip -j addr` output that are the host's own.
pub fn parse_addresses(json: &str) -> anyhow::Result<Vec<HostAddress>> {
    let links: Vec<IpLink> = serde_json::from_str(json).context("parsing `ip -j addr`")?;
    let mut out = Vec::new();
    for link in links {
        if own_interface(&link.ifname) {
            continue;
        }
        for a in link.addr_info {
            if a.family != "inet" || a.label.as_deref() == Some(FLOATING_LABEL) {
                continue;
            }
            let (Some(local), Some(prefix_len)) = (a.local, a.prefixlen) else {
                continue;
            };
            let Ok(ip) = local.parse::<Ipv4Addr>() else {
                continue;
            };
            out.push(HostAddress {
                ip,
                prefix_len,
                device: link.ifname.clone(),
            });
        }
    }
    Ok(out)
}

/// The routes in `ip -j route` output that are the host's own: not on the
/// agent's interfaces, and not the default route.
pub fn parse_routes(json: &str) -> anyhow::Result<Vec<HostRoute>> {
    let routes: Vec<IpRoute> = serde_json::from_str(json).context("parsing `ip -j route`")?;
    let mut out = Vec::new();
    for r in routes {
        if r.dev.as_deref().is_some_and(own_interface) || r.dst == "default" {
            continue;
        }
        let Ok(destination) = r.dst.parse::<Prefix>() else {
            continue;
        };
        if destination.len == 0 {
            continue;
        }
        out.push(HostRoute {
            destination,
            device: r.dev,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed output of `ip -j -4 addr show` on a host running a guest
    /// with a floating IP.
    const ADDRS: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"addr_info":[
        {"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"},
        {"family":"inet","local":"203.0.113.10","prefixlen":32,"scope":"global","label":"lo:nfip"}]},
      {"ifindex":2,"ifname":"eth0","addr_info":[
        {"family":"inet","local":"192.168.1.5","prefixlen":24,"broadcast":"192.168.1.255","scope":"global","label":"eth0"}]},
      {"ifindex":3,"ifname":"nbr-0a1b2c3d","addr_info":[
        {"family":"inet","local":"10.64.0.1","prefixlen":24,"scope":"global","label":"nbr-0a1b2c3d"}]},
      {"ifindex":4,"ifname":"ntap-11223344","addr_info":[]},
      {"ifindex":5,"ifname":"wg0"}
    ]"#;

    const ROUTES: &str = r#"[
      {"dst":"default","gateway":"192.168.1.1","dev":"eth0","flags":[]},
      {"dst":"10.8.0.0/16","gateway":"192.168.1.254","dev":"eth0","flags":[]},
      {"dst":"192.168.1.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"192.168.1.5","flags":[]},
      {"dst":"10.64.0.0/24","dev":"nbr-0a1b2c3d","protocol":"kernel","scope":"link","flags":[]},
      {"type":"blackhole","dst":"198.18.0.0/15","flags":[]},
      {"dst":"172.16.5.9","dev":"eth0","flags":[]}
    ]"#;

    #[test]
    fn addresses_leave_out_bridges_taps_and_floating_ips() {
        let got = parse_addresses(ADDRS).unwrap();
        let got: Vec<String> = got
            .iter()
            .map(|a| format!("{}/{} {}", a.ip, a.prefix_len, a.device))
            .collect();
        assert_eq!(got, ["127.0.0.1/8 lo", "192.168.1.5/24 eth0"]);
    }

    #[test]
    fn routes_leave_out_the_default_route_and_bridges() {
        let got = parse_routes(ROUTES).unwrap();
        let got: Vec<String> = got
            .iter()
            .map(|r| format!("{} {:?}", r.destination, r.device))
            .collect();
        assert_eq!(
            got,
            [
                "10.8.0.0/16 Some(\"eth0\")",
                "192.168.1.0/24 Some(\"eth0\")",
                "198.18.0.0/15 None",
                "172.16.5.9/32 Some(\"eth0\")",
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_list() {
        assert!(parse_addresses("not json").is_err());
        assert!(parse_routes("{}").is_err());
    }
}
