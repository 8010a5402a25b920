//! The orphan checker: compares what an agent left on its host (QEMU and
//! dnsmasq processes, TAPs, bridges, nftables entries, dnsmasq host files,
//! instance and network directories) with what the controller says should
//! exist, both ways: nothing without a server, no server without its parts.
//!
//! "What should exist" is the controller's desired state for the host (the
//! agent protocol's `GET /v1/agent/hosts/{id}/desired`: instances with their
//! ports, networks with their DNS records) plus each server's status from
//! the public API (a `running` server must have its QEMU, a `stopped` one
//! must not). Where things live is the agent's layout (`layout.rs`,
//! `network/`): `<agent dir>/instances/<server id>/`, `<agent
//! dir>/networks/<network id>/dnsmasq.conf` and the host files under
//! `nubis_agent::network::runtime_dir`, TAP
//! `ntap-<port id[..8]>`, bridge `nbr-<network id[..8]>`, nftables tables
//! `inet nubis`, `bridge nubis` and `netdev nubis_<tap suffix>`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// One server as it should be on the host.
#[derive(Clone, Debug)]
pub struct ExpectedServer {
    pub id: String,
    /// The public status (`running`, `stopped`, `error`, ...).
    pub status: String,
    /// Its NICs: TAP name, MAC, IP, network id.
    pub nics: Vec<ExpectedNic>,
}

#[derive(Clone, Debug)]
pub struct ExpectedNic {
    pub tap: String,
    pub mac: String,
    pub ip: String,
    pub network: String,
}

/// What should exist on one host.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    pub servers: BTreeMap<String, ExpectedServer>,
    /// Network id -> the IPs its DNS records should name.
    pub networks: BTreeMap<String, BTreeSet<String>>,
}

/// The TAP of a port (`network/tap.rs`): `ntap-` + the id's first 8 hex digits.
pub fn tap_name(port_id: &str) -> String {
    format!("ntap-{}", &port_id[..8])
}

/// The bridge of a network (`network/switch.rs`).
pub fn bridge_name(network_id: &str) -> String {
    format!("nbr-{}", &network_id[..8])
}

impl Expected {
    /// Builds the expectation from the host's desired state (agent protocol
    /// JSON) and the public status of each server (`id -> status`).
    pub fn new(desired: &Value, statuses: &BTreeMap<String, String>) -> Self {
        let mut expected = Self::default();
        for spec in desired["instances"].as_array().into_iter().flatten() {
            let id = spec["id"].as_str().expect("instance id").to_owned();
            let nics = spec["nics"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| ExpectedNic {
                    tap: tap_name(n["port"].as_str().expect("port id")),
                    mac: n["mac"].as_str().expect("mac").to_lowercase(),
                    ip: n["ip"].as_str().expect("ip").to_owned(),
                    network: n["network"]["id"].as_str().expect("network id").to_owned(),
                })
                .collect();
            let status = statuses
                .get(&id)
                .cloned()
                .unwrap_or_else(|| "absent from the API".into());
            expected
                .servers
                .insert(id.clone(), ExpectedServer { id, status, nics });
        }
        for network in desired["networks"].as_array().into_iter().flatten() {
            let id = network["spec"]["id"]
                .as_str()
                .expect("network id")
                .to_owned();
            let ips = network["dns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["ip"].as_str().map(str::to_owned))
                .collect();
            expected.networks.insert(id, ips);
        }
        expected
    }

    fn taps(&self) -> BTreeSet<String> {
        self.servers
            .values()
            .flat_map(|s| s.nics.iter().map(|n| n.tap.clone()))
            .collect()
    }

    fn bridges(&self) -> BTreeSet<String> {
        self.networks.keys().map(|id| bridge_name(id)).collect()
    }
}

/// Whether process `pid` holds a descriptor of TAP `tap` (a jailed QEMU
/// gets its TAPs from the agent: `-netdev tap,fd=N`).
fn holds_tap(pid: i32, tap: &str) -> bool {
    let wanted = format!("iff:\t{tap}");
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|info| info.lines().any(|l| l == wanted))
        })
}

/// A process of ours found in /proc.
struct Proc {
    pid: i32,
    args: Vec<String>,
}

/// Live (not zombie) processes whose program name starts with `program`
/// and whose command line mentions `needle`.
fn processes(program: &str, needle: &str) -> Vec<Proc> {
    let mut found = Vec::new();
    for pid in super::pids_mentioning(needle, program) {
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if zombie {
            continue;
        }
        let args = String::from_utf8_lossy(&cmdline)
            .split('\0')
            .map(str::to_owned)
            .collect();
        found.push(Proc { pid, args });
    }
    found
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Interface names in namespace `netns`.
fn links(netns: &str) -> Vec<String> {
    let json: Value = serde_json::from_str(&output("ip", &["-n", netns, "-j", "link", "show"]))
        .expect("ip -j link");
    json.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
        .collect()
}

/// Every string under `v` that starts with `prefix`.
fn strings_with_prefix(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        // `nbr-*` and the like are wildcards that name no device.
        Value::String(s) if s.starts_with(prefix) && !s.contains('*') => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| strings_with_prefix(x, prefix, out)),
        Value::Object(o) => o.values().for_each(|x| strings_with_prefix(x, prefix, out)),
        _ => {}
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn uuid_arg(args: &[String]) -> Option<&str> {
    let at = args.iter().position(|a| a == "-uuid")?;
    args.get(at + 1).map(String::as_str)
}

/// What the checker saw, for the final figures.
#[derive(Debug, Default)]
pub struct Findings {
    /// Each problem, readable (an orphan or a missing resource).
    pub problems: Vec<String>,
    pub qemus: usize,
    pub taps: usize,
    pub dnsmasqs: usize,
}

/// Compares the host (agent data dir `agent_dir` — the directory holding
/// `instances/` and `networks/` — in namespace `netns`) with `expected`.
pub fn check(agent_dir: &Path, netns: &str, expected: &Expected) -> Findings {
    let mut f = Findings::default();
    let needle = agent_dir.to_string_lossy().into_owned();
    let want_taps = expected.taps();
    let want_bridges = expected.bridges();

    // QEMU: one per running server, none for anything else.
    let mut qemus: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for p in processes("qemu-system", &needle) {
        f.qemus += 1;
        let Some(uuid) = uuid_arg(&p.args) else {
            f.problems
                .push(format!("QEMU pid {} without -uuid: {:?}", p.pid, p.args));
            continue;
        };
        qemus.entry(uuid.to_owned()).or_default().push(p.pid);
        match expected.servers.get(uuid) {
            None => f
                .problems
                .push(format!("orphan QEMU pid {} of server {uuid}", p.pid)),
            Some(s) => {
                let line = p.args.join(" ");
                for nic in &s.nics {
                    if !line.contains(&format!("ifname={},", nic.tap))
                        && !holds_tap(p.pid, &nic.tap)
                    {
                        f.problems.push(format!(
                            "QEMU pid {} of {uuid} does not use its TAP {}",
                            p.pid, nic.tap
                        ));
                    }
                }
            }
        }
    }
    for (uuid, pids) in &qemus {
        if pids.len() > 1 {
            f.problems
                .push(format!("{} QEMUs for server {uuid}: {pids:?}", pids.len()));
        }
    }
    for s in expected.servers.values() {
        let has = qemus.contains_key(&s.id);
        match s.status.as_str() {
            "running" if !has => f
                .problems
                .push(format!("server {} is running without a QEMU", s.id)),
            "stopped" if has => f
                .problems
                .push(format!("server {} is stopped but has a QEMU", s.id)),
            _ => {}
        }
    }

    // TAPs and bridges.
    let links = links(netns);
    let taps: BTreeSet<String> = links
        .iter()
        .filter(|l| l.starts_with("ntap-"))
        .cloned()
        .collect();
    f.taps = taps.len();
    for tap in taps.difference(&want_taps) {
        f.problems.push(format!("orphan TAP {tap}"));
    }
    for s in expected.servers.values().filter(|s| s.status == "running") {
        for nic in &s.nics {
            if !taps.contains(&nic.tap) {
                f.problems
                    .push(format!("running server {} lacks its TAP {}", s.id, nic.tap));
            }
        }
    }
    let bridges: BTreeSet<String> = links
        .iter()
        .filter(|l| l.starts_with("nbr-"))
        .cloned()
        .collect();
    for b in bridges.difference(&want_bridges) {
        f.problems.push(format!("orphan bridge {b}"));
    }
    for b in want_bridges.difference(&bridges) {
        f.problems.push(format!("network bridge {b} is missing"));
    }
    // VXLAN devices (networks across hosts) only for networks of the host.
    for l in links.iter().filter(|l| l.starts_with("nvx-")) {
        let bridge = l.replacen("nvx-", "nbr-", 1);
        if !want_bridges.contains(&bridge) {
            f.problems.push(format!("orphan VXLAN device {l}"));
        }
    }

    // nftables: the bridge table's per-TAP chains, the per-TAP netdev tables
    // and the bridges named by the inet table.
    let ruleset: Value = serde_json::from_str(&output(
        "ip",
        &["netns", "exec", netns, "nft", "-j", "list", "ruleset"],
    ))
    .expect("nft -j list ruleset");
    let items = ruleset["nftables"].as_array().cloned().unwrap_or_default();
    let ours = |item: &Value, kind: &str, family: &str| -> bool {
        item[kind]["family"] == family && item[kind]["table"] == "nubis"
    };
    let mut fw_taps = BTreeSet::new();
    let mut inet_bridges = BTreeSet::new();
    let mut port_chains = 0;
    let mut tables = BTreeSet::new();
    for item in &items {
        if let Some(t) = item.get("table") {
            let family = t["family"].as_str().unwrap_or_default();
            let name = t["name"].as_str().unwrap_or_default();
            tables.insert(format!("{family} {name}"));
            if family == "netdev" {
                if let Some(suffix) = name.strip_prefix("nubis_") {
                    let tap = format!("ntap-{suffix}");
                    if !want_taps.contains(&tap) {
                        f.problems
                            .push(format!("orphan nftables table netdev {name}"));
                    }
                }
            }
        }
        if ours(item, "chain", "bridge") {
            let name = item["chain"]["name"].as_str().unwrap_or_default();
            if name.starts_with("from") {
                port_chains += 1;
            }
        }
        if ours(item, "rule", "bridge") {
            strings_with_prefix(&item["rule"]["expr"], "ntap-", &mut fw_taps);
        }
        if ours(item, "rule", "inet") {
            strings_with_prefix(&item["rule"]["expr"], "nbr-", &mut inet_bridges);
        }
    }
    for tap in fw_taps.difference(&want_taps) {
        f.problems.push(format!(
            "orphan nftables chain for TAP {tap} (bridge nubis)"
        ));
    }
    for tap in want_taps.difference(&fw_taps) {
        f.problems
            .push(format!("TAP {tap} is not covered by the bridge firewall"));
    }
    if port_chains != want_taps.len() {
        f.problems.push(format!(
            "bridge nubis has {port_chains} per-port chains for {} ports",
            want_taps.len()
        ));
    }
    for b in inet_bridges.difference(&want_bridges) {
        f.problems
            .push(format!("orphan nftables rule for bridge {b} (inet nubis)"));
    }
    if expected.networks.is_empty() {
        for t in ["inet nubis", "bridge nubis"] {
            if tables.contains(t) {
                f.problems
                    .push(format!("nftables table {t} left without any network"));
            }
        }
    }

    // dnsmasq: one per network, its host files naming exactly its servers.
    let networks_dir = agent_dir.join("networks");
    let mut dnsmasqs: BTreeMap<String, usize> = BTreeMap::new();
    for p in processes("dnsmasq", &needle) {
        f.dnsmasqs += 1;
        let line = p.args.join(" ");
        let network = line
            .split(&format!("{}/", networks_dir.display()))
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("?")
            .to_owned();
        if !expected.networks.contains_key(&network) {
            f.problems
                .push(format!("orphan dnsmasq pid {} ({line})", p.pid));
        }
        *dnsmasqs.entry(network).or_default() += 1;
    }
    for id in expected.networks.keys() {
        match dnsmasqs.get(id).copied().unwrap_or(0) {
            1 => {}
            n => f
                .problems
                .push(format!("network {id} has {n} dnsmasq processes")),
        }
    }
    for name in dir_names(&nubis_agent::network::runtime_dir(&networks_dir)) {
        if !expected.networks.contains_key(&name) {
            f.problems.push(format!(
                "orphan dnsmasq runtime directory of network {name}"
            ));
        }
    }
    for name in dir_names(&networks_dir) {
        let Some(dns_ips) = expected.networks.get(&name) else {
            f.problems
                .push(format!("orphan network directory networks/{name}"));
            continue;
        };
        // dnsmasq reads its host files from the agent's runtime directory
        // (reachable by `nobody`), not from the data dir.
        let dir = nubis_agent::network::runtime_dir(&networks_dir).join(&name);
        let dhcp = std::fs::read_to_string(dir.join("dhcp-hosts")).unwrap_or_default();
        let present: BTreeSet<(String, String)> = dhcp
            .lines()
            .filter_map(|l| {
                let mut parts = l.split(',');
                Some((parts.next()?.to_lowercase(), parts.next()?.to_owned()))
            })
            .collect();
        let wanted: BTreeSet<(String, String)> = expected
            .servers
            .values()
            .flat_map(|s| s.nics.iter())
            .filter(|n| n.network == name)
            .map(|n| (n.mac.clone(), n.ip.clone()))
            .collect();
        for (mac, ip) in present.difference(&wanted) {
            f.problems.push(format!(
                "orphan DHCP host entry {mac} {ip} in network {name}"
            ));
        }
        for (mac, ip) in wanted.difference(&present) {
            f.problems.push(format!(
                "missing DHCP host entry {mac} {ip} in network {name}"
            ));
        }
        let dns = std::fs::read_to_string(dir.join("dns-hosts")).unwrap_or_default();
        let dns_present: BTreeSet<String> = dns
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        let server_ips: BTreeSet<String> = wanted.iter().map(|(_, ip)| ip.clone()).collect();
        for ip in dns_present.difference(dns_ips) {
            f.problems
                .push(format!("orphan DNS host entry {ip} in network {name}"));
        }
        for ip in dns_ips.difference(&server_ips) {
            f.problems.push(format!(
                "the controller keeps a DNS record {ip} without a server in network {name}"
            ));
        }
        for ip in server_ips.difference(&dns_present) {
            f.problems.push(format!(
                "server address {ip} has no DNS entry in network {name}"
            ));
        }
    }

    // The image cache: once everything is converged no download is in
    // flight, so a partial download is left over.
    for name in dir_names(&agent_dir.join("images")) {
        if name.starts_with(".download-") {
            f.problems
                .push(format!("orphan partial download images/{name}"));
        }
    }

    // Instance directories: one per server, with its disk once it ran.
    let instances_dir = agent_dir.join("instances");
    let present: BTreeSet<String> = dir_names(&instances_dir).into_iter().collect();
    for id in &present {
        if !expected.servers.contains_key(id) {
            f.problems
                .push(format!("orphan instance directory instances/{id}"));
        }
    }
    for s in expected.servers.values() {
        if matches!(s.status.as_str(), "running" | "stopped")
            && !instances_dir.join(&s.id).join("vm/disk.qcow2").exists()
        {
            f.problems
                .push(format!("server {} ({}) has no disk", s.id, s.status));
        }
    }
    f
}
