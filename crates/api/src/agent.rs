//! The controller-agent protocol (`/v1/agent/...`).
//!
//! The controller holds desired state; each agent long-polls for the desired
//! state of its host, converges the host to it, and reports what it observes.
//! Every message is a full snapshot, so a lost or repeated message does no harm.

use crate::images::ImageFormat;
use crate::networks::Cidr;
use crate::{HostId, ImageId, NetworkId, PortId, ProjectId, ServerId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// How a host runs guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// Hardware virtualization.
    Kvm,
    /// QEMU's software emulation (slow; for hosts without usable KVM).
    Tcg,
}

impl Accelerator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

/// `POST /v1/agent/hosts`: an agent announces itself (idempotent by name).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterHost {
    pub name: String,
    /// Base URL of the agent's own API (console logs), e.g. `https://10.0.0.2:8782`;
    /// its host must be the one in the host's certificate.
    pub url: String,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub accel: Accelerator,
    /// The host's own addresses and routes, which no tenant network may
    /// overlap. Absent from agents older than this field.
    #[serde(default)]
    pub addressing: Option<HostAddressing>,
    /// The CPU model (`model name` of `/proc/cpuinfo`). Absent from agents
    /// older than this field.
    #[serde(default)]
    pub cpu_model: Option<String>,
    /// The host's underlay ("tunnel") address: where other hosts send the
    /// VXLAN traffic of the networks they share with it. Absent when the
    /// host has none (its networks then stay on the host).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub tunnel_ip: Option<Ipv4Addr>,
    /// The id of the shared instance store the host's instance directories
    /// live in (`--shared-instance-store`): hosts with the same id see the
    /// same files, so moving a server between them copies nothing. Absent:
    /// local disks only.
    #[serde(default)]
    pub shared_store: Option<String>,
}

/// The IPv4 addresses and routes a host has for itself: every interface
/// but the agent's own bridges and TAPs, and no floating IP (`lo:nfip`).
/// A tenant network that overlapped one of them would put a route on the
/// host that captures the host's own traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostAddressing {
    pub addresses: Vec<HostAddress>,
    pub routes: Vec<HostRoute>,
}

/// One address of a host's interface, with its prefix length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostAddress {
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub device: String,
}

/// One route of a host's main routing table (the default route left out:
/// it is "everything else", not a range of the host).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostRoute {
    #[schema(value_type = String, example = "192.168.1.0/24")]
    pub destination: crate::security_groups::Prefix,
    /// The interface, when the route has one (blackhole routes do not).
    #[serde(default)]
    pub device: Option<String>,
}

/// A host as the controller knows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Host {
    pub id: HostId,
    pub name: String,
    pub url: String,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub accel: Accelerator,
    pub last_seen: DateTime<Utc>,
    /// The CPU model the agent reported, empty if unknown.
    #[serde(default)]
    pub cpu_model: String,
    /// Whether new servers may be placed here (an administrator's switch).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Why an administrator disabled the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

/// An image a host must have locally, fetched by the agent from the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageRef {
    pub id: ImageId,
    pub format: ImageFormat,
    /// Hex SHA-256; the agent checks the download against it.
    pub checksum: String,
    pub size: u64,
}

/// Whether a guest should be running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    Running,
    Stopped,
}

/// Everything a host needs to run one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceSpec {
    pub id: ServerId,
    pub name: String,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// The image under the instance's disk; an `iso` image means a blank
    /// disk (the ISO itself goes in the CD-ROM drive, see `cdrom`).
    pub disk_image: ImageRef,
    pub kernel: Option<ImageRef>,
    pub initrd: Option<ImageRef>,
    pub cmdline: Option<String>,
    pub power: PowerState,
    /// Raised by each reboot request; the agent resets the guest when it is
    /// higher than the last one it carried out.
    pub reboot_generation: u64,
    pub nics: Vec<NicSpec>,
    pub guest: GuestConfig,
    /// The security groups applied to every NIC of the instance.
    #[serde(default)]
    pub security_groups: Vec<crate::SecurityGroupId>,
    /// Bandwidth and suspension, applied to every NIC.
    #[serde(default)]
    pub network_limits: NetworkLimits,
    /// An ISO (format `iso`) in the instance's CD-ROM drive, booted before
    /// the disk. `None` once ejected: the agent ejects it from a running
    /// guest at once (QMP `eject`) and leaves it out of the next boot.
    #[serde(default)]
    pub cdrom: Option<ImageRef>,
    /// The placement generation: raised every time the server is placed on
    /// a host (created, migrated, evacuated). An agent acts only on the
    /// instances its desired state lists; the generation tells its reports
    /// about a move apart from those of an earlier one.
    #[serde(default)]
    pub generation: u64,
    /// Set on the target host while the server is moving here: where its
    /// disk comes from. Absent: the instance is settled (or new).
    #[serde(default)]
    pub arrival: Option<Arrival>,
}

/// Another host, as an agent reaches it (its agent API, mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerHost {
    pub id: HostId,
    /// Base URL of the peer agent's API, e.g. `https://10.0.0.3:8782`.
    pub url: String,
}

/// How an instance arrives on its new host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Arrival {
    /// Cold migration: pull the disk from the source agent
    /// (`GET /v1/instances/{id}/disk`), streamed and SHA-256-checked; a
    /// broken copy is restarted from scratch.
    Copy { source: PeerHost },
    /// The instance directory is already there (a store shared with the
    /// source): copy nothing.
    Shared,
    /// Live migration: start QEMU waiting for the incoming state and serve
    /// its disk for the source's drive-mirror.
    Live { source: PeerHost },
    /// Evacuation without the disk: a fresh disk from the image (the data
    /// is lost; the controller records a `rebuilt` event).
    Rebuild,
}

/// An instance leaving this host: the source keeps its files (and, for a
/// live move, its QEMU) and serves its disk to `target` only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Departure {
    pub id: ServerId,
    /// The placement generation of the move (the instance's new one).
    #[serde(default)]
    pub generation: u64,
    pub target: PeerHost,
    /// Live migration: the target's endpoints, once it reported them.
    #[serde(default)]
    pub live: Option<LiveTarget>,
}

/// Where the source of a live migration sends the guest's state and disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveTarget {
    /// QEMU's migration URI on the target, e.g. `tcp:10.0.0.3:49152`.
    #[serde(default)]
    pub migration_uri: String,
    /// The target's NBD export for drive-mirror, e.g. `nbd://10.0.0.3:49153/disk`.
    #[serde(default)]
    pub nbd_uri: String,
}

/// A leftover the controller confirms the host may remove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Released {
    pub id: ServerId,
    /// Leave the instance's directory: it is in a store shared with the
    /// host the server now lives on.
    #[serde(default)]
    pub keep_disk: bool,
}

/// What the host enforces on an instance's NICs: the effective bandwidth
/// (the server's, capped while throttled) and whether networking is cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkLimits {
    pub bandwidth: crate::bandwidth::Bandwidth,
    /// Traffic quota used up with the `suspend` policy: drop everything.
    pub suspended: bool,
}

/// A network as a host needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkSpec {
    pub id: NetworkId,
    #[schema(value_type = String)]
    pub cidr: Cidr,
    #[schema(value_type = String)]
    pub gateway: Ipv4Addr,
    /// `<project>.<zone>`: servers are `<server>.<domain>`.
    pub domain: String,
}

/// One NIC of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NicSpec {
    pub port: PortId,
    pub network: NetworkSpec,
    pub mac: String,
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
}

/// An SSH public key with its key pair's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamedKey {
    pub name: String,
    pub public_key: String,
}

/// What the guest learns about itself (config drive and metadata service).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GuestConfig {
    pub hostname: String,
    pub project: ProjectId,
    pub keys: Vec<NamedKey>,
    /// Base64.
    pub user_data: Option<String>,
    pub config_drive: bool,
    /// The format of the configuration disk, when one is attached.
    #[serde(default)]
    pub config_format: crate::images::ConfigFormat,
}

/// A DNS record a network's resolver answers on every host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DnsRecord {
    /// Fully qualified: `<server>.<project>.<zone>`.
    pub name: String,
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
}

/// A network in use on a host, with every DNS record of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostNetwork {
    pub spec: NetworkSpec,
    pub dns: Vec<DnsRecord>,
    /// How the network reaches its ports on other hosts; absent from
    /// controllers older than this field (the network stays on the host).
    #[serde(default)]
    pub overlay: Option<Overlay>,
}

/// A network's VXLAN segment as one host sees it: its VNI, and every other
/// host with ports on the network (unicast, from the controller: no
/// multicast, no flooding to hosts that do not have the network).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Overlay {
    /// The VXLAN network identifier (24 bits), unique in the cloud.
    pub vni: u32,
    /// The other hosts with ports on the network, by tunnel address, with
    /// the MACs of those ports; sorted. Empty: no host but this one.
    pub peers: Vec<OverlayPeer>,
}

/// Another host that has ports on a network.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct OverlayPeer {
    #[schema(value_type = String)]
    pub tunnel_ip: Ipv4Addr,
    /// The MACs of its ports on the network (lower case), sorted.
    pub macs: Vec<String>,
}

/// `GET /v1/agent/hosts/{id}/desired`: all instances that should exist on the host.
/// Instances on the host but not listed here are to be removed.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DesiredState {
    /// Changes whenever desired state may have changed; pass it back as `after`
    /// to wait for the next change.
    pub revision: u64,
    pub instances: Vec<InstanceSpec>,
    /// Networks the host's instances use; others are removed from the host.
    pub networks: Vec<HostNetwork>,
    /// Floating IPs of this host's instances.
    #[serde(default)]
    pub floating_ips: Vec<FloatingIpSpec>,
    /// Every security group this host's instances use, remote groups resolved.
    #[serde(default)]
    pub security_groups: Vec<SecurityGroupSpec>,
    /// Instances leaving this host: not to run here, files kept and the
    /// disk served to the target named.
    #[serde(default)]
    pub departures: Vec<Departure>,
    /// Leftovers (see `HostReport::leftovers`) the host may now remove.
    /// Nothing that is not listed here is ever removed.
    #[serde(default)]
    pub released: Vec<Released>,
}

/// Whom a rule allows: a prefix, or the current members of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleRemote {
    #[schema(value_type = String)]
    Cidr(crate::security_groups::Prefix),
    #[schema(value_type = Vec<String>)]
    Addresses(Vec<Ipv4Addr>),
}

/// A rule as a host enforces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleSpec {
    pub direction: crate::security_groups::Direction,
    pub protocol: crate::security_groups::Protocol,
    pub ports: Option<(u16, u16)>,
    pub remote: RuleRemote,
}

/// A security group as a host enforces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecurityGroupSpec {
    pub id: crate::SecurityGroupId,
    pub rules: Vec<RuleSpec>,
}

/// A 1:1 NAT from a public address to an instance's address on this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FloatingIpSpec {
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    #[schema(value_type = String)]
    pub fixed_ip: Ipv4Addr,
}

/// What a host observes of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObservedPower {
    /// Disk or QEMU still being prepared.
    Creating,
    Running,
    Stopped,
    /// The last attempt to converge failed; see `fault`.
    Error,
}

/// One instance in a host report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceReport {
    pub id: ServerId,
    pub power: ObservedPower,
    pub fault: Option<String>,
    /// The highest reboot generation carried out.
    pub reboot_generation: u64,
    /// When QEMU last reported `running` for this instance.
    pub launched_at: Option<DateTime<Utc>>,
    /// True when the guest powered itself off (as opposed to a host-side stop
    /// or a crash): the controller then records the server as stopped.
    pub guest_shutdown: bool,
}

/// The byte counters of one NIC as the host reads them. Counters only grow
/// while `source` stays the same; a new source (a new TAP, another host)
/// starts from zero. The controller adds the difference to the last values
/// it stored, so repeating a report counts nothing twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrafficCounter {
    pub server: ServerId,
    pub port: PortId,
    /// Identifies the counter: host, device and its creation.
    pub source: String,
    /// Bytes delivered towards the guest.
    pub inbound_bytes: u64,
    /// Bytes the guest sent.
    pub outbound_bytes: u64,
}

/// `PUT /v1/agent/hosts/{id}/report`: every instance present on the host.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostReport {
    pub instances: Vec<InstanceReport>,
    /// Traffic counters of every NIC on the host.
    #[serde(default)]
    pub traffic: Vec<TrafficCounter>,
    /// Every instance whose files are still on the host, whether or not it
    /// is in `instances` yet (an actor still adopting it after an agent
    /// restart, or still removing it): a server being deleted is kept until
    /// its host no longer holds it, so its address is not handed out while
    /// its TAP and QEMU may still exist.
    #[serde(default)]
    pub held: Vec<ServerId>,
    /// The host's addresses and routes when the agent read them again
    /// (about every heartbeat); absent: unchanged since the last one.
    #[serde(default)]
    pub addressing: Option<HostAddressing>,
    /// Local instances neither in the desired instances nor departures
    /// (deleted, or placed elsewhere since): their QEMU is stopped at once
    /// (fencing), their files kept until the controller releases them.
    #[serde(default)]
    pub leftovers: Vec<ServerId>,
    /// Leftovers whose QEMU this agent found running and stopped: the
    /// controller records a `fenced` event (once per leftover).
    #[serde(default)]
    pub fenced: Vec<ServerId>,
    /// Progress of the moves under way on this host (arrivals and
    /// departures).
    #[serde(default)]
    pub moves: Vec<MoveReport>,
}

/// Which end of a move a host is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MoveRole {
    #[default]
    Arrival,
    Departure,
}

/// Where one end of a move is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MoveProgress {
    /// Copying or preparing.
    #[default]
    Working,
    /// The target has everything it needs: the move can complete.
    Arrived,
    /// This end gave up; see `error`.
    Failed,
}

/// One end of a move, as a host reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MoveReport {
    pub id: ServerId,
    /// The placement generation of the move this report is about.
    pub generation: u64,
    #[serde(default)]
    pub role: MoveRole,
    #[serde(default)]
    pub progress: MoveProgress,
    /// Disk bytes copied so far (arrival) or served (departure).
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub error: Option<String>,
    /// Live migration, target (role `arrival`): where its QEMU waits for
    /// the guest's state and serves its disk; the controller copies this
    /// into the source's `Departure::live`. Set while `working`.
    #[serde(default)]
    pub live: Option<LiveTarget>,
    /// Live migration, source (role `departure`, progress `arrived`): the
    /// guest's pause at the switch-over, as QEMU measured it (ms).
    #[serde(default)]
    pub downtime_ms: Option<u64>,
}
