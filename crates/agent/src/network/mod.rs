//! Instance networking on a host: a switch segment (bridge) per network
//! with the gateway address, a TAP per NIC, dnsmasq for DHCP and DNS, and
//! the nftables rules (NAT, isolation). Converged as a whole from the
//! desired state, like instances, so restarts leave nothing extra.

pub mod access;
pub(crate) mod command;
pub mod dnsmasq;
mod faults;
pub mod firewall;
pub mod host_fence;
pub mod loopback;
pub mod overlay;
pub mod shaping;
pub mod switch;
pub mod tap;

use dnsmasq::{DhcpHost, Dnsmasq};
use nubis_api::agent::{
    FloatingIpSpec, HostNetwork, HostReport, InstanceSpec, NetworkLimits, NicSpec,
    SecurityGroupSpec,
};
use nubis_api::NetworkId;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switch::{bridge_name, LinuxBridge, Switch, BRIDGE_PREFIX};
use tokio::sync::Mutex;

/// The host's instance networking.
#[derive(Clone)]
pub struct HostNetworking {
    dir: PathBuf,
    /// Per-network files that helpers read after dropping root.
    runtime: PathBuf,
    /// Why DHCP and DNS are not served on a network here, if they are not.
    faults: faults::NetworkFaults,
    switch: LinuxBridge,
    /// The ruleset last applied, to skip reloading an unchanged one.
    applied_rules: Arc<Mutex<Option<String>>>,
    /// What guests may reach of the host (the metadata port, management
    /// ranges they may not reach).
    fence: host_fence::Fence,
    /// This host's end of the VXLAN tunnels of networks across hosts;
    /// `None`: networks stay on this host.
    tunnel: Option<overlay::Tunnel>,
    /// Whether the bridge family tracks connections here (probed once).
    tracking: Arc<tokio::sync::OnceCell<firewall::Tracking>>,
    /// The TAPs the applied firewall covers (see `wait_protected`).
    protected: Arc<tokio::sync::watch::Sender<HashSet<String>>>,
    /// What was last verified on the host, and when: unchanged desired state
    /// within `RECHECK` costs no commands; older checks are redone.
    verified: Arc<Mutex<Verified>>,
    /// The limits each TAP enforces since this agent applied them (empty
    /// after a restart, so adopted instances get theirs again).
    limited: Arc<Mutex<HashMap<String, NetworkLimits>>>,
    /// How traffic from guests is limited here (probed once).
    outbound: Arc<tokio::sync::OnceCell<shaping::Outbound>>,
}

/// How long a verified bridge or address set is trusted without looking.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Default)]
struct Verified {
    bridges: HashSet<NetworkId>,
    floating: Option<HashSet<std::net::Ipv4Addr>>,
    at: Option<std::time::Instant>,
}

impl HostNetworking {
    /// `dir` holds per-network state (dnsmasq files); what helpers read
    /// after dropping root goes under [`runtime_dir`] of it.
    pub fn new(dir: PathBuf, metadata_port: u16) -> Self {
        Self {
            runtime: runtime_dir(&dir),
            faults: faults::NetworkFaults::default(),
            dir,
            switch: LinuxBridge,
            applied_rules: Arc::default(),
            fence: host_fence::Fence {
                metadata_port,
                management: Vec::new(),
            },
            tunnel: None,
            tracking: Arc::default(),
            protected: Arc::new(tokio::sync::watch::Sender::new(HashSet::new())),
            verified: Arc::default(),
            limited: Arc::default(),
            outbound: Arc::default(),
        }
    }

    /// Guests may not open connections to `cidrs` (`--management-cidr`).
    pub fn with_management_cidrs(mut self, cidrs: Vec<nubis_api::security_groups::Prefix>) -> Self {
        self.fence.management = cidrs;
        self
    }

    /// Networks span hosts over VXLAN from `tunnel` (see `overlay`).
    pub fn with_tunnel(mut self, tunnel: Option<overlay::Tunnel>) -> Self {
        self.tunnel = tunnel;
        self
    }

    /// The MTU guests are told on every network (see [`overlay::Tunnel::guest_mtu`]).
    pub fn guest_mtu(&self) -> u32 {
        self.tunnel
            .map(|t| t.guest_mtu())
            .unwrap_or(overlay::DEFAULT_GUEST_MTU)
    }

    fn dnsmasq(&self, id: NetworkId) -> Dnsmasq {
        Dnsmasq::new(
            self.dir.join(id.to_string()),
            self.runtime.join(id.to_string()),
        )
    }

    /// Turns the reports of instances with a NIC on a network whose DHCP
    /// and DNS fail here into errors with that fault: the guest runs, but
    /// cannot get its address, keys or name.
    pub fn mark_network_faults(&self, report: &mut HostReport, instances: &[InstanceSpec]) {
        self.faults.mark(report, instances)
    }

    /// Waits until the set of failing networks changes.
    pub async fn faults_changed(&self) {
        self.faults.changed().await
    }

    /// Converges what instances plug into: forwarding, bridges and floating
    /// addresses for `networks` and `floating`; removes the networks no
    /// longer used here. The firewall follows in `apply_firewall`.
    pub async fn converge(
        &self,
        networks: &[HostNetwork],
        floating: &[FloatingIpSpec],
    ) -> anyhow::Result<()> {
        enable_forwarding().await?;
        let mut verified = self.verified.lock().await;
        if verified.at.is_none_or(|t| t.elapsed() > RECHECK) {
            *verified = Verified {
                at: Some(std::time::Instant::now()),
                ..Verified::default()
            };
        }
        // Networks no longer wanted lose their bridge below: forget them, so
        // they are made again when wanted again.
        verified
            .bridges
            .retain(|id| networks.iter().any(|n| n.spec.id == *id));
        let missing: Vec<&nubis_api::agent::NetworkSpec> = networks
            .iter()
            .map(|n| &n.spec)
            .filter(|n| !verified.bridges.contains(&n.id))
            .collect();
        // Networks no longer used go first, before any instance is touched.
        self.remove_unused(networks).await?;
        self.switch.ensure_networks(&missing).await?;
        verified.bridges.extend(missing.iter().map(|n| n.id));
        // Every pass (a few commands per network that spans hosts): peers
        // come and go with servers on other hosts.
        overlay::converge(networks, self.tunnel).await?;
        let wanted: HashSet<std::net::Ipv4Addr> = floating.iter().map(|f| f.ip).collect();
        if verified.floating.as_ref() != Some(&wanted) {
            floating_addresses(floating).await?;
            verified.floating = Some(wanted);
        }
        Ok(())
    }

    /// Loads the whole firewall (NAT, isolation, floating IPs, anti-spoofing,
    /// security groups) for the desired state, then announces which TAPs it
    /// protects: instances resume their (paused) guests only after that.
    pub async fn apply_firewall(
        &self,
        networks: &[HostNetwork],
        instances: &[InstanceSpec],
        floating: &[FloatingIpSpec],
        groups: &[SecurityGroupSpec],
    ) -> anyhow::Result<()> {
        let specs: Vec<_> = networks.iter().map(|n| n.spec.clone()).collect();
        let ports: Vec<firewall::Port> = instances
            .iter()
            .flat_map(|i| {
                let rules: Vec<_> = groups
                    .iter()
                    .filter(|g| i.security_groups.contains(&g.id))
                    .flat_map(|g| g.rules.iter().cloned())
                    .collect();
                i.nics.iter().map(move |n| firewall::Port {
                    tap: tap::tap_name(n.port),
                    mac: n.mac.clone(),
                    ip: n.ip,
                    gateway: n.network.gateway,
                    rules: rules.clone(),
                })
            })
            .collect();
        let tracking = *self
            .tracking
            .get_or_init(|| async {
                let t = firewall::probe_tracking().await;
                tracing::info!(?t, "bridge firewall connection tracking");
                t
            })
            .await;
        let spanning: Vec<_> = match self.tunnel {
            Some(_) => overlay::spanning(networks).collect(),
            None => Vec::new(),
        };
        let overlays: Vec<firewall::OverlayPort> = spanning
            .iter()
            .map(|(spec, _)| firewall::OverlayPort {
                device: overlay::vxlan_name(spec),
                gateway: spec.gateway,
                gateway_mac: overlay::gateway_mac(spec),
            })
            .collect();
        // Guests may not reach the other hosts' tunnel ends (a VXLAN packet
        // sent there could enter any network).
        let mut fence = self.fence.clone();
        fence.management.extend(spanning.iter().flat_map(|(_, o)| {
            o.peers.iter().map(|p| nubis_api::security_groups::Prefix {
                addr: p.tunnel_ip,
                len: 32,
            })
        }));
        let rules = firewall::ruleset(&specs, &ports, &overlays, floating, &fence, tracking);
        let mut applied = self.applied_rules.lock().await;
        if applied.as_deref() != Some(rules.as_str()) {
            if specs.is_empty() {
                firewall::clear().await?;
            } else {
                firewall::apply(&rules).await?;
            }
            *applied = Some(rules);
        }
        let covered: HashSet<String> = ports.iter().map(|p| p.tap.clone()).collect();
        self.protected.send_replace(covered);
        Ok(())
    }

    /// Waits until the applied firewall covers every TAP in `taps`.
    pub async fn wait_protected(&self, taps: &[String]) -> anyhow::Result<()> {
        let mut rx = self.protected.subscribe();
        let covered = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            rx.wait_for(|covered| taps.iter().all(|t| covered.contains(t)))
                .await
                .is_ok()
        })
        .await;
        match covered {
            Ok(true) => Ok(()),
            _ => anyhow::bail!("the firewall for this instance's ports was not applied"),
        }
    }

    /// Converges what guests need only once they run: DHCP and DNS for
    /// `networks` (static entries for the NICs of `instances`). Called after
    /// instances got their specs, so starting dnsmasq does not delay them.
    /// A network that fails does not hold up the others; its error is kept
    /// as the network's fault (see [`Self::mark_network_faults`]).
    pub async fn serve(
        &self,
        networks: &[HostNetwork],
        instances: &[InstanceSpec],
    ) -> anyhow::Result<()> {
        let mut failed = HashMap::new();
        for network in networks {
            let bridge = bridge_name(&network.spec);
            let hosts: Vec<DhcpHost> = instances
                .iter()
                .flat_map(|i| i.nics.iter().map(move |n| (i, n)))
                .filter(|(_, n)| n.network.id == network.spec.id)
                .map(|(i, n)| DhcpHost {
                    mac: n.mac.clone(),
                    ip: n.ip,
                    hostname: i.guest.hostname.clone(),
                })
                .collect();
            if let Err(e) = self
                .dnsmasq(network.spec.id)
                .ensure(
                    &network.spec,
                    &bridge,
                    &hosts,
                    &network.dns,
                    self.guest_mtu(),
                )
                .await
            {
                let fault = format!(
                    "DHCP and DNS of network {} ({}) fail on this host: {e:#}",
                    network.spec.cidr, network.spec.domain
                );
                failed.insert(network.spec.id, fault);
            }
        }
        let summary: Vec<String> = failed.values().cloned().collect();
        self.faults.replace(failed);
        if summary.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(summary.join("; "))
        }
    }

    /// Removes bridges and dnsmasq state of networks not in `networks`.
    async fn remove_unused(&self, networks: &[HostNetwork]) -> anyhow::Result<()> {
        let wanted_bridges: HashSet<String> =
            networks.iter().map(|n| bridge_name(&n.spec)).collect();
        let wanted_ids: HashSet<NetworkId> = networks.iter().map(|n| n.spec.id).collect();
        // Either directory may hold a network's files (the runtime one is
        // emptied at boot).
        let present: HashSet<NetworkId> = [&self.dir, &self.runtime]
            .into_iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        for id in present {
            if !wanted_ids.contains(&id) {
                self.dnsmasq(id).remove().await?;
                tracing::info!(network = %id, "network removed from host");
            }
        }
        if networks.is_empty() {
            // Gone with the last network (fails harmlessly while not empty).
            let _ = std::fs::remove_dir(&self.runtime);
        }
        for bridge in command::links_with_prefix(BRIDGE_PREFIX).await? {
            if !wanted_bridges.contains(&bridge) {
                self.switch.remove_network(&bridge).await?;
            }
        }
        Ok(())
    }

    /// Creates a NIC's TAP and attaches it to its network (which `converge`
    /// has made); returns its name.
    pub async fn plug(&self, nic: &NicSpec) -> anyhow::Result<String> {
        let name = tap::tap_name(nic.port);
        let existed = command::link_exists(&name).await;
        self.switch.plug(&name, &nic.network).await?;
        let mut limited = self.limited.lock().await;
        if existed {
            // Whatever it enforces is unknown: `limit` sets it again.
            limited.remove(&name);
        } else {
            // Made afresh: it enforces nothing yet, so an unlimited server
            // needs no commands (`unplug` removed any table of its name).
            limited.insert(name.clone(), NetworkLimits::default());
        }
        Ok(name)
    }

    /// Makes each of `taps` enforce `limits` (bandwidth, suspension); a TAP
    /// already enforcing them costs nothing.
    pub async fn limit(&self, taps: &[String], limits: &NetworkLimits) -> anyhow::Result<()> {
        let mut limited = self.limited.lock().await;
        for tap in taps {
            if limited.get(tap) == Some(limits) {
                continue;
            }
            let outbound = *self
                .outbound
                .get_or_init(|| async {
                    let o = shaping::probe(tap).await;
                    tracing::info!(?o, "limiting traffic from guests with");
                    o
                })
                .await;
            shaping::apply(tap, limits, outbound).await?;
            limited.insert(tap.clone(), *limits);
            tracing::info!(%tap, ?limits, "network limits applied");
        }
        Ok(())
    }

    /// Removes a NIC's TAP and its limits.
    pub async fn unplug(&self, tap_name: &str) -> anyhow::Result<()> {
        self.limited.lock().await.remove(tap_name);
        shaping::clear(tap_name).await?;
        tap::remove(tap_name).await
    }

    /// Removes TAPs that belong to no desired instance (left by a crash),
    /// and the limits of TAPs that are gone.
    pub async fn remove_stray_taps(&self, instances: &[InstanceSpec]) -> anyhow::Result<()> {
        let wanted: HashSet<String> = instances
            .iter()
            .flat_map(|i| i.nics.iter().map(|n| tap::tap_name(n.port)))
            .collect();
        for name in command::links_with_prefix(tap::TAP_PREFIX).await? {
            if !wanted.contains(&name) {
                self.unplug(&name).await?;
            }
        }
        shaping::remove_stray_tables(&wanted).await
    }
}

/// Where helpers' files of every data dir live: a tmpfs that every user
/// can traverse, emptied at boot (the agent writes the files again).
pub const RUNTIME_ROOT: &str = "/run/nubis";

/// The runtime directory of the agent whose network state is in `dir`:
/// unique per data dir, so several agents (clouds in tests) can share a
/// host, and reachable by unprivileged helpers wherever the data dir is.
pub fn runtime_dir(dir: &Path) -> PathBuf {
    use sha2::Digest;
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let digest = sha2::Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    Path::new(RUNTIME_ROOT).join(&hex::encode(digest)[..16])
}

/// The label of floating addresses on `lo` (Linux answers ARP for any local
/// address, so the uplink attracts their traffic; the labels tell ours apart).
const FLOATING_LABEL: &str = "lo:nfip";

/// Makes exactly the floating IPs in `floating` local addresses.
async fn floating_addresses(floating: &[FloatingIpSpec]) -> anyhow::Result<()> {
    let json = command::run("ip", &["-j", "addr", "show", "dev", "lo"]).await?;
    let links: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    let present: HashSet<String> = links
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["label"] == FLOATING_LABEL)
        .filter_map(|a| a["local"].as_str().map(str::to_owned))
        .collect();
    let wanted: HashSet<String> = floating.iter().map(|f| f.ip.to_string()).collect();
    for ip in wanted.difference(&present) {
        let cidr = format!("{ip}/32");
        command::run(
            "ip",
            &["addr", "add", &cidr, "dev", "lo", "label", FLOATING_LABEL],
        )
        .await?;
    }
    for ip in present.difference(&wanted) {
        let cidr = format!("{ip}/32");
        command::run("ip", &["addr", "del", &cidr, "dev", "lo"]).await?;
    }
    Ok(())
}

/// Routing between instance networks and the uplink needs forwarding on.
async fn enable_forwarding() -> anyhow::Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if tokio::fs::read_to_string(path).await?.trim() != "1" {
        tokio::fs::write(path, "1\n").await?;
    }
    Ok(())
}
