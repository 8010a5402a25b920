//! Config drives: a small VFAT image attached to an instance from which
//! cloud-init (or any OpenStack-aware agent) reads the instance's metadata,
//! keys, user data and network configuration before it has a network.
//!
//! Two layouts are written:
//!
//! - [`DriveFlavor::ConfigDrive2`]: OpenStack's `config-2` layout, as Nova
//!   writes it with `mkfs.vfat -n config-2`.
//! - [`DriveFlavor::NoCloud`]: cloud-init's NoCloud seed, label `cidata`.
//!
//! The image is built in memory with `fatfs` (no `mkfs.vfat`/`mtools` at run
//! time) and then written atomically. Timestamps are fixed at 1980-01-01 and
//! the volume id is derived from the content, so the same content always gives
//! the same bytes.

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What goes on a config drive (OpenStack config-2 layout).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigDrive {
    /// `openstack/{latest,2012-08-10}/meta_data.json`. Must be a JSON object
    /// with a string `uuid` (cloud-init refuses metadata without one); its
    /// `hostname` and `public_keys` also feed NoCloud's `meta-data`.
    pub meta_data: Value,
    /// `openstack/{latest,2012-08-10}/user_data`, raw; omitted when `None`.
    pub user_data: Option<Vec<u8>>,
    /// `openstack/{latest,2012-08-10}/network_data.json`. `null` or `{}`
    /// omits the file, so cloud-init falls back to DHCP on the first NIC.
    pub network_data: Value,
    /// `openstack/{latest,2012-08-10}/vendor_data.json` (`{}` usually;
    /// `null` is written as `{}`).
    pub vendor_data: Value,
}

/// The layout (and volume label) of the drive. Also the NoCloud seed (label
/// `cidata`: files `meta-data`, `user-data`, `network-config`) for images
/// that want it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveFlavor {
    /// Label `config-2`, files under `openstack/`.
    ConfigDrive2,
    /// Label `cidata`, files `meta-data`, `user-data`, optionally
    /// `network-config` (netplan-style version 2, see [`write`]) and
    /// `vendor-data`.
    NoCloud,
}

impl DriveFlavor {
    /// The volume label. Lowercase, as Nova and cloud-localds write them:
    /// cloud-init matches labels case-sensitively against `config-2`/`CONFIG-2`
    /// and `cidata`/`CIDATA`, and blkid reports the bytes as stored.
    pub fn label(self) -> &'static str {
        match self {
            DriveFlavor::ConfigDrive2 => "config-2",
            DriveFlavor::NoCloud => "cidata",
        }
    }
}

/// Smallest image written. Nova's vfat drives are always 64 MiB, but a few
/// files need far less, and the image is built in memory and written in full.
const MIN_SIZE: u64 = 2 << 20;
/// Largest image written: Nova's config drive size. fatfs formats images
/// this small as FAT12/FAT16, which every guest reads.
const MAX_SIZE: u64 = 64 << 20;
const MIB: u64 = 1 << 20;
/// Space reserved per file and directory beyond its content: cluster
/// rounding (at most 2 KiB here) and directory entries.
const PER_ENTRY_SLACK: u64 = 4096;
/// Space for the boot sector, both FATs and the root directory.
const FS_OVERHEAD: u64 = MIB;

/// OpenStack metadata versions written. cloud-init reads every file from the
/// newest dated version present (falling back to `latest` only when none
/// is), so the dated directory carries the full set, not just
/// `meta_data.json`.
const OPENSTACK_VERSIONS: [&str; 2] = ["2012-08-10", "latest"];

/// Link types cloud-init treats as a physical NIC (its
/// `KNOWN_PHYSICAL_TYPES`; a missing type counts too).
const PHYSICAL_LINK_TYPES: &[&str] = &[
    "bgpovs",
    "bridge",
    "cascading",
    "dvs",
    "ethernet",
    "hw_veb",
    "hyperv",
    "ovs",
    "phy",
    "tap",
    "vhostuser",
    "vif",
];

/// Writes the drive image to `path`: built in `path.with_extension("tmp")`,
/// then renamed, so `path` is either absent, the old image or the complete
/// new one. The file is mode 0600: user data may hold secrets.
///
/// For [`DriveFlavor::NoCloud`], `network-config` is cloud-init network
/// config version 2 converted from `network_data` (links, static and DHCP
/// networks, routes, DNS; bonds are refused), written as JSON restricted to
/// what is also valid YAML (cloud-init parses the file as YAML). `meta-data`
/// holds `instance-id` (from `uuid`), `local-hostname` (from `hostname`) and
/// `public-keys` (from `public_keys`, an object or list of keys).
/// `vendor-data` is written when `vendor_data` is a string or has a string
/// `cloud-init` key, as cloud-init reads OpenStack vendor data.
pub fn write(path: &Path, drive: &ConfigDrive, flavor: DriveFlavor) -> anyhow::Result<()> {
    let files = match flavor {
        DriveFlavor::ConfigDrive2 => config_drive2_files(drive),
        DriveFlavor::NoCloud => nocloud_files(drive),
    }
    .with_context(|| format!("preparing {} config drive", flavor.label()))?;
    let image = build_image(flavor.label(), &files)
        .with_context(|| format!("building {} config drive image", flavor.label()))?;
    write_atomically(path, &image)
}

/// One file of the drive: a '/'-separated path and its content.
type DriveFile = (String, Vec<u8>);

fn config_drive2_files(drive: &ConfigDrive) -> anyhow::Result<Vec<DriveFile>> {
    instance_uuid(&drive.meta_data)?;
    let meta_data = serde_json::to_vec(&drive.meta_data).context("serializing meta_data")?;
    let vendor_data = if drive.vendor_data.is_null() {
        b"{}".to_vec()
    } else {
        serde_json::to_vec(&drive.vendor_data).context("serializing vendor_data")?
    };
    let network_data = if is_empty_json(&drive.network_data) {
        None
    } else {
        Some(serde_json::to_vec(&drive.network_data).context("serializing network_data")?)
    };
    let mut files = Vec::new();
    for version in OPENSTACK_VERSIONS {
        let dir = format!("openstack/{version}");
        files.push((format!("{dir}/meta_data.json"), meta_data.clone()));
        if let Some(user_data) = &drive.user_data {
            files.push((format!("{dir}/user_data"), user_data.clone()));
        }
        files.push((format!("{dir}/vendor_data.json"), vendor_data.clone()));
        if let Some(network_data) = &network_data {
            files.push((format!("{dir}/network_data.json"), network_data.clone()));
        }
    }
    Ok(files)
}

fn nocloud_files(drive: &ConfigDrive) -> anyhow::Result<Vec<DriveFile>> {
    let mut files = vec![
        (
            "meta-data".to_string(),
            nocloud_meta_data(&drive.meta_data)?.into_bytes(),
        ),
        // NoCloud requires `user-data` to exist, even empty.
        (
            "user-data".to_string(),
            drive.user_data.clone().unwrap_or_default(),
        ),
    ];
    if let Some(config) =
        network_config_v2(&drive.network_data).context("converting network_data")?
    {
        let text = serde_json::to_string_pretty(&config).context("serializing network-config")?;
        files.push(("network-config".to_string(), yaml_safe(&text).into_bytes()));
    }
    if let Some(vendor) = nocloud_vendor_data(&drive.vendor_data)? {
        files.push(("vendor-data".to_string(), vendor.into_bytes()));
    }
    Ok(files)
}

/// The `uuid` of `meta_data`, which cloud-init requires (it becomes the
/// instance id).
fn instance_uuid(meta_data: &Value) -> anyhow::Result<&str> {
    let Some(object) = meta_data.as_object() else {
        bail!("meta_data is not a JSON object");
    };
    match object.get("uuid") {
        Some(Value::String(uuid)) if !uuid.is_empty() => Ok(uuid),
        Some(_) => bail!("meta_data.uuid is not a non-empty string"),
        None => bail!("meta_data has no uuid"),
    }
}

/// NoCloud `meta-data` (YAML). Every scalar is a double-quoted string so
/// that no hostname or key can change the document's structure.
fn nocloud_meta_data(meta_data: &Value) -> anyhow::Result<String> {
    let uuid = instance_uuid(meta_data)?;
    let mut out = format!("instance-id: {}\n", yaml_string(uuid));
    match meta_data.get("hostname") {
        None | Some(Value::Null) => {}
        Some(Value::String(hostname)) => {
            out.push_str(&format!("local-hostname: {}\n", yaml_string(hostname)));
        }
        Some(_) => bail!("meta_data.hostname is not a string"),
    }
    let keys: Vec<&Value> = match meta_data.get("public_keys") {
        None | Some(Value::Null) => Vec::new(),
        // OpenStack's shape: key pair name -> key.
        Some(Value::Object(by_name)) => by_name.values().collect(),
        Some(Value::Array(keys)) => keys.iter().collect(),
        Some(key @ Value::String(_)) => vec![key],
        Some(_) => bail!("meta_data.public_keys is not an object, list or string"),
    };
    if !keys.is_empty() {
        out.push_str("public-keys:\n");
        for key in keys {
            let Some(key) = key.as_str() else {
                bail!("meta_data.public_keys holds a value that is not a string");
            };
            out.push_str(&format!("  - {}\n", yaml_string(key)));
        }
    }
    Ok(out)
}

/// What NoCloud's `vendor-data` gets from OpenStack vendor data, following
/// cloud-init's own reading of it: a string as is, or an object's
/// `cloud-init` entry. Other objects are for other consumers.
fn nocloud_vendor_data(vendor_data: &Value) -> anyhow::Result<Option<String>> {
    match vendor_data {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Object(object) => match object.get("cloud-init") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => bail!("vendor_data.cloud-init is not a string"),
        },
        _ => bail!("vendor_data is not an object or string"),
    }
}

fn is_empty_json(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(object) => object.is_empty(),
        _ => false,
    }
}

/// A YAML double-quoted scalar holding `s` exactly (also a JSON string).
fn yaml_string(s: &str) -> String {
    // Serializing a &str cannot fail; the fallback only avoids a panic path.
    yaml_safe(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()))
}

/// Makes JSON text valid YAML with the same meaning. serde_json leaves some
/// characters raw that YAML forbids or treats as line breaks (DEL, C1
/// controls, U+2028/2029, BOM, U+FFFE/FFFF); outside strings JSON text is
/// plain ASCII, so those can only be inside strings, where a `\uXXXX` escape
/// means the same in both languages.
fn yaml_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        let code = u32::from(c);
        let unsafe_in_yaml = matches!(
            code,
            0x7F..=0x9F | 0x2028 | 0x2029 | 0xFEFF | 0xFFFE | 0xFFFF
        );
        if unsafe_in_yaml {
            out.push_str(&format!("\\u{code:04X}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// cloud-init network config version 2 for OpenStack `network_data`, or
/// `None` when there is nothing to configure. Version 2 rather than 1
/// because its interfaces are matched by MAC without being renamed; the
/// link's `id` names the entry, as cloud-init's own conversion does.
fn network_config_v2(network_data: &Value) -> anyhow::Result<Option<Value>> {
    if is_empty_json(network_data) {
        return Ok(None);
    }
    let Some(root) = network_data.as_object() else {
        bail!("network_data is not a JSON object");
    };
    let links = array_field(root, "links", "network_data")?;
    let networks = array_field(root, "networks", "network_data")?;
    let services = array_field(root, "services", "network_data")?;
    if links.is_empty() && networks.is_empty() {
        return Ok(None);
    }

    // First pass: names, so VLANs and networks can refer to any link.
    let mut names: HashMap<String, String> = HashMap::new();
    let mut link_objects = Vec::with_capacity(links.len());
    for (i, link) in links.iter().enumerate() {
        let what = format!("network_data.links[{i}]");
        let Some(link) = link.as_object() else {
            bail!("{what} is not an object");
        };
        let id = str_field(link, "id", &what)?.unwrap_or_default();
        let name = if id.is_empty() {
            format!("eth{i}")
        } else {
            id.to_string()
        };
        if names.values().any(|n| *n == name) || names.contains_key(id) {
            bail!("{what}: duplicate link id {id:?}");
        }
        names.insert(id.to_string(), name.clone());
        link_objects.push((what, name, link));
    }

    let mut ethernets: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut vlans: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (what, name, link) in link_objects {
        let mut entry = Map::new();
        let mac = str_field(link, "ethernet_mac_address", &what)?;
        match str_field(link, "type", &what)? {
            Some("vlan") => {
                let id = match link.get("vlan_id") {
                    Some(Value::Number(n)) => n.as_u64().filter(|id| *id <= 4094),
                    Some(Value::String(s)) => s.parse::<u64>().ok().filter(|id| *id <= 4094),
                    _ => None,
                };
                let Some(id) = id else {
                    bail!("{what}: vlan_id is missing or not a VLAN id");
                };
                let Some(parent) = str_field(link, "vlan_link", &what)? else {
                    bail!("{what}: vlan link has no vlan_link");
                };
                let Some(parent) = names.get(parent) else {
                    bail!("{what}: vlan_link {parent:?} is not a link id");
                };
                entry.insert("id".into(), json!(id));
                entry.insert("link".into(), json!(parent));
                let vlan_mac = str_field(link, "vlan_mac_address", &what)?.or(mac);
                if let Some(mac) = vlan_mac {
                    entry.insert("macaddress".into(), json!(mac.to_ascii_lowercase()));
                }
            }
            None => {
                physical_entry(&mut entry, mac);
            }
            Some(kind) if PHYSICAL_LINK_TYPES.contains(&kind) => {
                physical_entry(&mut entry, mac);
            }
            Some(kind) => bail!("{what}: link type {kind:?} is not supported in network-config"),
        }
        match link.get("mtu") {
            None | Some(Value::Null) => {}
            Some(Value::Number(mtu)) if mtu.as_u64().is_some() => {
                entry.insert("mtu".into(), Value::Number(mtu.clone()));
            }
            Some(_) => bail!("{what}: mtu is not a number"),
        }
        if entry.contains_key("id") {
            vlans.insert(name, entry);
        } else {
            ethernets.insert(name, entry);
        }
    }

    let global_dns = dns_servers(services, "network_data.services")?;
    let mut search: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut dns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, network) in networks.iter().enumerate() {
        let what = format!("network_data.networks[{i}]");
        let Some(network) = network.as_object() else {
            bail!("{what} is not an object");
        };
        let Some(link) = str_field(network, "link", &what)? else {
            bail!("{what} has no link");
        };
        let Some(name) = names.get(link) else {
            bail!("{what}: link {link:?} is not a link id");
        };
        let entry = match ethernets.get_mut(name) {
            Some(entry) => entry,
            None => match vlans.get_mut(name) {
                Some(entry) => entry,
                None => bail!("{what}: link {link:?} is not a link id"),
            },
        };
        let Some(kind) = str_field(network, "type", &what)? else {
            bail!("{what} has no type");
        };
        match kind {
            "ipv4_dhcp" | "dhcp4" => {
                entry.insert("dhcp4".into(), json!(true));
            }
            "ipv6_dhcp" | "dhcp6" | "ipv6_dhcpv6-stateful" | "ipv6_dhcpv6-stateless" => {
                entry.insert("dhcp6".into(), json!(true));
            }
            "ipv6_slaac" => {
                entry.insert("accept-ra".into(), json!(true));
            }
            "ipv4" | "ipv6" => {
                let Some(ip) = str_field(network, "ip_address", &what)? else {
                    bail!("{what}: static network has no ip_address");
                };
                let netmask = str_field(network, "netmask", &what)?;
                let address = cidr(ip, netmask).with_context(|| format!("{what}: address"))?;
                push_unique(entry, "addresses", json!(address));
                for (j, route) in array_field(network, "routes", &what)?.iter().enumerate() {
                    let what = format!("{what}.routes[{j}]");
                    let Some(route) = route.as_object() else {
                        bail!("{what} is not an object");
                    };
                    let Some(to) = str_field(route, "network", &what)? else {
                        bail!("{what} has no network");
                    };
                    let to = cidr(to, str_field(route, "netmask", &what)?)
                        .with_context(|| format!("{what}: network"))?;
                    let Some(via) = str_field(route, "gateway", &what)? else {
                        bail!("{what} has no gateway");
                    };
                    via.parse::<IpAddr>()
                        .with_context(|| format!("{what}: gateway {via:?} is not an IP address"))?;
                    let mut out = Map::new();
                    out.insert("to".into(), json!(to));
                    out.insert("via".into(), json!(via));
                    if let Some(metric) = route.get("metric").and_then(Value::as_u64) {
                        out.insert("metric".into(), json!(metric));
                    }
                    push_unique(entry, "routes", Value::Object(out));
                }
            }
            other => bail!("{what}: network type {other:?} is not supported in network-config"),
        }
        let servers = dns.entry(name.clone()).or_default();
        servers.extend(dns_servers(
            array_field(network, "services", &what)?,
            &what,
        )?);
        for server in array_field(network, "dns_nameservers", &what)? {
            let Some(server) = server.as_str() else {
                bail!("{what}.dns_nameservers holds a value that is not a string");
            };
            servers.push(server.to_string());
        }
        let domains = search.entry(name.clone()).or_default();
        for domain in array_field(network, "dns_search", &what)? {
            let Some(domain) = domain.as_str() else {
                bail!("{what}.dns_search holds a value that is not a string");
            };
            domains.push(domain.to_string());
        }
    }

    // v2 has no global resolvers: every configured interface gets them.
    for (name, mut servers) in dns {
        servers.extend(global_dns.iter().cloned());
        let domains = search.remove(&name).unwrap_or_default();
        let servers = dedup(servers);
        let domains = dedup(domains);
        if servers.is_empty() && domains.is_empty() {
            continue;
        }
        let mut nameservers = Map::new();
        if !servers.is_empty() {
            nameservers.insert("addresses".into(), json!(servers));
        }
        if !domains.is_empty() {
            nameservers.insert("search".into(), json!(domains));
        }
        if let Some(entry) = ethernets.get_mut(&name).or(vlans.get_mut(&name)) {
            entry.insert("nameservers".into(), Value::Object(nameservers));
        }
    }

    let mut config = Map::new();
    config.insert("version".into(), json!(2));
    if !ethernets.is_empty() {
        config.insert("ethernets".into(), json!(ethernets));
    }
    if !vlans.is_empty() {
        config.insert("vlans".into(), json!(vlans));
    }
    Ok(Some(Value::Object(config)))
}

fn physical_entry(entry: &mut Map<String, Value>, mac: Option<&str>) {
    if let Some(mac) = mac {
        // cloud-init compares MACs in lowercase.
        entry.insert(
            "match".into(),
            json!({ "macaddress": mac.to_ascii_lowercase() }),
        );
    }
}

/// The array at `object[key]`; empty when absent or null.
fn array_field<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> anyhow::Result<&'a [Value]> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => bail!("{what}.{key} is not a list"),
    }
}

/// The string at `object[key]`; `None` when absent or null.
fn str_field<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> anyhow::Result<Option<&'a str>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => bail!("{what}.{key} is not a string"),
    }
}

/// Addresses of the `dns` entries of an OpenStack `services` list.
fn dns_servers(services: &[Value], what: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, service) in services.iter().enumerate() {
        let what = format!("{what}.services[{i}]");
        let Some(service) = service.as_object() else {
            bail!("{what} is not an object");
        };
        if str_field(service, "type", &what)? != Some("dns") {
            continue;
        }
        let Some(address) = str_field(service, "address", &what)? else {
            bail!("{what}: dns service has no address");
        };
        address
            .parse::<IpAddr>()
            .with_context(|| format!("{what}: {address:?} is not an IP address"))?;
        out.push(address.to_string());
    }
    Ok(out)
}

/// `ip/prefix` from an address and an optional netmask (dotted or IPv6
/// form). An address that already has a prefix is kept; one with neither
/// is a host address.
fn cidr(ip: &str, netmask: Option<&str>) -> anyhow::Result<String> {
    if let Some((addr, prefix)) = ip.split_once('/') {
        let addr: IpAddr = addr
            .parse()
            .with_context(|| format!("{ip:?} is not an address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u32>() {
            Ok(p) if p <= max => return Ok(format!("{addr}/{p}")),
            _ => bail!("{ip:?} has an invalid prefix length"),
        }
    }
    let addr: IpAddr = ip
        .parse()
        .with_context(|| format!("{ip:?} is not an IP address"))?;
    let prefix = match netmask {
        None => {
            if addr.is_ipv4() {
                32
            } else {
                128
            }
        }
        Some(mask) => prefix_len(addr, mask)?,
    };
    Ok(format!("{addr}/{prefix}"))
}

/// The prefix length a netmask of `addr`'s family stands for. A bare number
/// is accepted too, as some generators write the prefix in `netmask`.
fn prefix_len(addr: IpAddr, mask: &str) -> anyhow::Result<u32> {
    let (bits, max) = match (addr, mask.parse::<IpAddr>()) {
        (IpAddr::V4(_), Ok(IpAddr::V4(m))) => (u128::from(u32::from(m)) << 96, 32),
        (IpAddr::V6(_), Ok(IpAddr::V6(m))) => (u128::from(m), 128),
        (_, Ok(_)) => bail!("netmask {mask:?} is not of the address's family"),
        (_, Err(_)) => {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            return match mask.parse::<u32>() {
                Ok(p) if p <= max => Ok(p),
                _ => bail!("{mask:?} is not a netmask"),
            };
        }
    };
    let prefix = bits.leading_ones();
    // Contiguous: nothing set after the leading ones.
    if bits.checked_shl(prefix).unwrap_or(0) != 0 || prefix > max {
        bail!("netmask {mask:?} is not contiguous");
    }
    Ok(prefix)
}

fn push_unique(entry: &mut Map<String, Value>, key: &str, value: Value) {
    let list = entry.entry(key.to_string()).or_insert_with(|| json!([]));
    if let Value::Array(items) = list {
        if !items.contains(&value) {
            items.push(value);
        }
    }
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The image size for `files`: [`MIN_SIZE`] or, for more content, whole MiB
/// with room for cluster rounding and metadata.
fn image_size(files: &[DriveFile]) -> anyhow::Result<u64> {
    let dirs: std::collections::BTreeSet<&str> = files
        .iter()
        .flat_map(|(path, _)| path.match_indices('/').map(move |(i, _)| &path[..i]))
        .collect();
    let mut needed = FS_OVERHEAD.saturating_add(PER_ENTRY_SLACK.saturating_mul(dirs.len() as u64));
    for (_, data) in files {
        let len = data.len() as u64;
        needed = needed.saturating_add(
            len.div_ceil(PER_ENTRY_SLACK)
                .saturating_mul(PER_ENTRY_SLACK),
        );
        needed = needed.saturating_add(PER_ENTRY_SLACK);
    }
    let size = needed.div_ceil(MIB).saturating_mul(MIB).max(MIN_SIZE);
    if size > MAX_SIZE {
        bail!(
            "the content needs a {} MiB image, more than the {} MiB a config drive may have",
            size / MIB,
            MAX_SIZE / MIB
        );
    }
    Ok(size)
}

/// Formats a VFAT image labelled `label` holding `files`.
fn build_image(label: &str, files: &[DriveFile]) -> anyhow::Result<Vec<u8>> {
    let size = image_size(files)?;
    let len = usize::try_from(size).context("image size does not fit in memory")?;
    let mut image = vec![0u8; len];
    format_image(&mut image, label, volume_id(label, files))?;

    let options = fatfs::FsOptions::new().time_provider(&FIXED_TIME);
    let fs = fatfs::FileSystem::new(Cursor::new(&mut image[..]), options)
        .context("mounting the new image")?;
    {
        let root = fs.root_dir();
        for (path, data) in files {
            // Parents first: fatfs creates one level at a time.
            for (i, _) in path.match_indices('/') {
                root.create_dir(&path[..i])
                    .with_context(|| format!("creating directory {}", &path[..i]))?;
            }
            let mut file = root
                .create_file(path)
                .with_context(|| format!("creating {path}"))?;
            file.truncate()
                .with_context(|| format!("truncating {path}"))?;
            file.write_all(data)
                .with_context(|| format!("writing {path}"))?;
            file.flush().with_context(|| format!("writing {path}"))?;
        }
    }
    fs.unmount().context("unmounting the new image")?;
    fix_dot_entries(&mut image).context("fixing directory entries")?;
    Ok(image)
}

/// Stamps every file 1980-01-01 00:00 (the earliest FAT date), so images
/// are reproducible. fatfs's own default without chrono is the invalid
/// 1980-00-00.
#[derive(Debug)]
struct FixedTime;

static FIXED_TIME: FixedTime = FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

/// Formats `image` as FAT12/16 with `label` both in the boot sector and as
/// the root directory's volume label entry, as mkfs.vfat does (Windows reads
/// only the latter; blkid prefers it and reports the boot sector's as
/// LABEL_FATBOOT).
fn format_image(image: &mut [u8], label: &str, volume_id: u32) -> anyhow::Result<()> {
    let label = label_bytes(label)?;
    let options = fatfs::FormatVolumeOptions::new()
        .volume_label(label)
        .volume_id(volume_id);
    fatfs::format_volume(Cursor::new(image), options).context("formatting")
}

/// An 11-byte, space-padded FAT volume label.
fn label_bytes(label: &str) -> anyhow::Result<[u8; 11]> {
    let mut out = [b' '; 11];
    if label.len() > out.len() || !label.is_ascii() {
        bail!("volume label {label:?} is not at most 11 ASCII characters");
    }
    for (slot, byte) in out.iter_mut().zip(label.bytes()) {
        *slot = byte;
    }
    Ok(out)
}

const DIR_ENTRY: usize = 32;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LFN: u8 = 0x0F;
const DELETED: u8 = 0xE5;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";

/// Where the parts of a FAT12/16 volume are, from its boot sector.
struct FatLayout {
    fat12: bool,
    fat_start: usize,
    root_start: usize,
    root_len: usize,
    data_start: usize,
    cluster_size: usize,
    clusters: u32,
}

impl FatLayout {
    fn read(image: &[u8]) -> anyhow::Result<Self> {
        let u16_at = |offset: usize| -> anyhow::Result<usize> {
            let bytes = image
                .get(offset..offset + 2)
                .context("image shorter than a boot sector")?;
            Ok(usize::from(u16::from_le_bytes([bytes[0], bytes[1]])))
        };
        let u8_at = |offset: usize| -> anyhow::Result<usize> {
            Ok(usize::from(
                *image
                    .get(offset)
                    .context("image shorter than a boot sector")?,
            ))
        };
        let bytes_per_sector = u16_at(11)?;
        let sectors_per_cluster = u8_at(13)?;
        let reserved_sectors = u16_at(14)?;
        let fats = u8_at(16)?;
        let root_entries = u16_at(17)?;
        let sectors_per_fat = u16_at(22)?;
        let total_sectors = match u16_at(19)? {
            0 => {
                let bytes = image
                    .get(32..36)
                    .context("image shorter than a boot sector")?;
                u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
            }
            n => n,
        };
        if bytes_per_sector == 0 || sectors_per_cluster == 0 {
            bail!("boot sector has no geometry");
        }
        if root_entries == 0 || sectors_per_fat == 0 {
            bail!("not a FAT12/FAT16 volume");
        }
        let fat_start = reserved_sectors * bytes_per_sector;
        let root_start = fat_start + fats * sectors_per_fat * bytes_per_sector;
        let root_len = root_entries * DIR_ENTRY;
        let data_start = root_start + root_len.div_ceil(bytes_per_sector) * bytes_per_sector;
        let cluster_size = sectors_per_cluster * bytes_per_sector;
        let data_len = (total_sectors * bytes_per_sector).saturating_sub(data_start);
        let clusters = u32::try_from(data_len / cluster_size).context("cluster count")?;
        Ok(Self {
            // The FAT type follows from the cluster count alone.
            fat12: clusters < 4085,
            fat_start,
            root_start,
            root_len,
            data_start,
            cluster_size,
            clusters,
        })
    }

    /// The byte range of data cluster `cluster` (numbered from 2).
    fn cluster(&self, cluster: u32) -> anyhow::Result<std::ops::Range<usize>> {
        if cluster < 2 || cluster - 2 >= self.clusters {
            bail!("cluster {cluster} is outside the volume");
        }
        let start = self.data_start + (cluster as usize - 2) * self.cluster_size;
        Ok(start..start + self.cluster_size)
    }

    /// The cluster after `cluster` in its chain, `None` at the end.
    fn next(&self, image: &[u8], cluster: u32) -> anyhow::Result<Option<u32>> {
        let n = cluster as usize;
        let (offset, end) = if self.fat12 {
            (n + n / 2, 0xFF8)
        } else {
            (n * 2, 0xFFF8)
        };
        let bytes = image
            .get(self.fat_start + offset..self.fat_start + offset + 2)
            .context("FAT entry outside the image")?;
        let raw = u32::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        let value = match (self.fat12, n % 2) {
            (true, 0) => raw & 0xFFF,
            (true, _) => raw >> 4,
            (false, _) => raw,
        };
        Ok((value < end).then_some(value))
    }
}

/// First clusters of the subdirectories listed in `entries` (not `.`/`..`).
fn subdirectories(entries: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in entries.chunks_exact(DIR_ENTRY) {
        match entry[0] {
            0 => break,
            DELETED | b'.' => continue,
            _ => {}
        }
        let attr = entry[11];
        if attr == ATTR_LFN || attr & ATTR_VOLUME_ID != 0 || attr & ATTR_DIRECTORY == 0 {
            continue;
        }
        out.push(u32::from(u16::from_le_bytes([entry[26], entry[27]])));
    }
    out
}

/// fatfs 0.3 writes a long-name entry before each subdirectory's `.` and
/// `..`, which must be its first two entries: fsck.vfat calls the result
/// broken (and with `-a` deletes the directories), Windows too. This moves
/// `.` and `..` into the first two slots and marks the two long-name slots
/// deleted.
fn fix_dot_entries(image: &mut [u8]) -> anyhow::Result<()> {
    let layout = FatLayout::read(image)?;
    let root = image
        .get(layout.root_start..layout.root_start + layout.root_len)
        .context("root directory outside the image")?;
    let mut pending = subdirectories(root);
    let mut visited = 0u32;
    while let Some(dir) = pending.pop() {
        visited += 1;
        if visited > layout.clusters {
            bail!("directory tree has a cycle");
        }
        let first = layout.cluster(dir)?;
        let entries = image
            .get_mut(first)
            .context("directory outside the image")?;
        fix_dots(entries).with_context(|| format!("directory at cluster {dir}"))?;
        // Walk the whole chain for deeper directories.
        let mut cluster = Some(dir);
        let mut length = 0u32;
        while let Some(c) = cluster {
            length += 1;
            if length > layout.clusters {
                bail!("cluster chain of directory {dir} has a cycle");
            }
            let range = layout.cluster(c)?;
            let entries = image.get(range).context("directory outside the image")?;
            pending.extend(subdirectories(entries));
            cluster = layout.next(image, c)?;
        }
    }
    Ok(())
}

fn fix_dots(entries: &mut [u8]) -> anyhow::Result<()> {
    let name = |i: usize| entries.get(i * DIR_ENTRY..i * DIR_ENTRY + 11);
    let attr = |i: usize| entries.get(i * DIR_ENTRY + 11).copied();
    if name(0) == Some(DOT) && name(1) == Some(DOTDOT) {
        return Ok(());
    }
    let expected = attr(0) == Some(ATTR_LFN)
        && name(1) == Some(DOT)
        && attr(2) == Some(ATTR_LFN)
        && name(3) == Some(DOTDOT);
    if !expected {
        bail!("unexpected layout of the . and .. entries");
    }
    entries.copy_within(DIR_ENTRY..2 * DIR_ENTRY, 0);
    entries.copy_within(3 * DIR_ENTRY..4 * DIR_ENTRY, DIR_ENTRY);
    let freed = &mut entries[2 * DIR_ENTRY..4 * DIR_ENTRY];
    freed.fill(0);
    freed[0] = DELETED;
    freed[DIR_ENTRY] = DELETED;
    Ok(())
}

/// The volume serial number (blkid's UUID): a hash of the content, so
/// drives differ between instances but a rebuild gives the same bytes.
fn volume_id(label: &str, files: &[DriveFile]) -> u32 {
    let mut hash = Sha256::new();
    hash.update(label.as_bytes());
    for (path, data) in files {
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((data.len() as u64).to_le_bytes());
        hash.update(data);
    }
    let digest = hash.finalize();
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Writes `bytes` to a temporary sibling of `path` and renames it over
/// `path`. The temporary file is removed on failure. No fsync: the agent
/// writes the drive afresh before every boot, so a copy lost in a crash is
/// simply made again (and the sync cost milliseconds on every create).
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temp = path.with_extension("tmp");
    if temp == path {
        temp = path.with_extension("tmp.tmp");
    }
    let result = (|| -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing {}", temp.display()))?;
        std::fs::rename(&temp, path)
            .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::path::PathBuf;
    use std::process::Command;

    const UUID: &str = "0b7f9f51-5a4e-4b8e-9a51-3f0c2d6f4e11";

    fn network_data() -> Value {
        json!({
            "links": [{
                "id": "tap0",
                "type": "ethernet",
                "ethernet_mac_address": "52:54:00:AB:CD:EF",
                "mtu": 1500
            }],
            "networks": [{
                "id": "network0",
                "type": "ipv4",
                "link": "tap0",
                "ip_address": "10.0.0.5",
                "netmask": "255.255.255.0",
                "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}],
                "network_id": "net-1"
            }],
            "services": [{"type": "dns", "address": "10.0.0.1"}]
        })
    }

    fn drive() -> ConfigDrive {
        ConfigDrive {
            meta_data: json!({
                "uuid": UUID,
                "name": "web-1",
                "hostname": "wéb-1.ñubis.internal",
                "public_keys": {"laptop": "ssh-ed25519 AAAAC3Nza josé@portátil 🔑"},
            }),
            user_data: Some(b"#cloud-config\nhostname: web-1\n".to_vec()),
            network_data: network_data(),
            vendor_data: json!({}),
        }
    }

    struct ReadBack {
        boot_label: String,
        root_label: Option<String>,
        files: BTreeMap<String, Vec<u8>>,
        dirs: Vec<String>,
    }

    fn collect<T: fatfs::ReadWriteSeek>(dir: fatfs::Dir<'_, T>, prefix: &str, out: &mut ReadBack) {
        for entry in dir.iter() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            if entry.is_dir() {
                out.dirs.push(path.clone());
                collect(entry.to_dir(), &format!("{path}/"), out);
            } else {
                let mut data = Vec::new();
                entry.to_file().read_to_end(&mut data).unwrap();
                out.files.insert(path, data);
            }
        }
    }

    fn read_back(path: &Path) -> ReadBack {
        let file = std::fs::File::open(path).unwrap();
        let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
        let mut out = ReadBack {
            boot_label: fs.volume_label(),
            root_label: fs.read_volume_label_from_root_dir().unwrap(),
            files: BTreeMap::new(),
            dirs: Vec::new(),
        };
        collect(fs.root_dir(), "", &mut out);
        out
    }

    fn write_temp(drive: &ConfigDrive, flavor: DriveFlavor) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.img");
        write(&path, drive, flavor).unwrap();
        (dir, path)
    }

    /// Runs a tool if it is installed; `None` when it is not.
    fn run(program: &str, args: &[&str]) -> Option<std::process::Output> {
        match Command::new(program).args(args).output() {
            Ok(out) => Some(out),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("{program} not installed: check skipped");
                None
            }
            Err(e) => panic!("running {program}: {e}"),
        }
    }

    fn blkid_export(path: &Path) -> Option<BTreeMap<String, String>> {
        let out = run("blkid", &["-p", "-o", "export", path.to_str().unwrap()])?;
        assert!(out.status.success(), "blkid -p failed: {out:?}");
        Some(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn config_drive2_reads_back_with_fatfs() {
        let drive = drive();
        let (_dir, path) = write_temp(&drive, DriveFlavor::ConfigDrive2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MIN_SIZE);
        let back = read_back(&path);
        assert_eq!(back.boot_label, "config-2");
        assert_eq!(back.root_label.as_deref(), Some("config-2"));
        // Case preserved (long names), both versions complete.
        assert_eq!(
            back.dirs,
            ["openstack", "openstack/2012-08-10", "openstack/latest"]
        );
        let meta = serde_json::to_vec(&drive.meta_data).unwrap();
        let net = serde_json::to_vec(&drive.network_data).unwrap();
        let mut expected = BTreeMap::new();
        for version in ["2012-08-10", "latest"] {
            let dir = format!("openstack/{version}");
            expected.insert(format!("{dir}/meta_data.json"), meta.clone());
            expected.insert(format!("{dir}/user_data"), drive.user_data.clone().unwrap());
            expected.insert(format!("{dir}/vendor_data.json"), b"{}".to_vec());
            expected.insert(format!("{dir}/network_data.json"), net.clone());
        }
        assert_eq!(back.files, expected);
        // Unicode survives the JSON round trip.
        let parsed: Value =
            serde_json::from_slice(&back.files["openstack/latest/meta_data.json"]).unwrap();
        assert_eq!(parsed["hostname"], "wéb-1.ñubis.internal");
        assert_eq!(
            parsed["public_keys"]["laptop"],
            "ssh-ed25519 AAAAC3Nza josé@portátil 🔑"
        );
    }

    #[test]
    fn optional_files_are_omitted() {
        let drive = ConfigDrive {
            meta_data: json!({"uuid": UUID}),
            user_data: None,
            network_data: Value::Null,
            vendor_data: Value::Null,
        };
        let (_dir, path) = write_temp(&drive, DriveFlavor::ConfigDrive2);
        let back = read_back(&path);
        let names: Vec<&str> = back.files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "openstack/2012-08-10/meta_data.json",
                "openstack/2012-08-10/vendor_data.json",
                "openstack/latest/meta_data.json",
                "openstack/latest/vendor_data.json",
            ]
        );
        assert_eq!(back.files["openstack/latest/vendor_data.json"], b"{}");

        let (_dir, path) = write_temp(&drive, DriveFlavor::NoCloud);
        let back = read_back(&path);
        let names: Vec<&str> = back.files.keys().map(String::as_str).collect();
        // NoCloud needs user-data even when empty.
        assert_eq!(names, ["meta-data", "user-data"]);
        assert_eq!(back.files["user-data"], b"");
        assert_eq!(
            back.files["meta-data"],
            format!("instance-id: \"{UUID}\"\n").as_bytes()
        );
    }

    #[test]
    fn nocloud_reads_back_with_fatfs() {
        let mut drive = drive();
        drive.vendor_data = json!({"cloud-init": "#cloud-config\npackages: [htop]\n"});
        let (_dir, path) = write_temp(&drive, DriveFlavor::NoCloud);
        let back = read_back(&path);
        assert_eq!(back.boot_label, "cidata");
        assert_eq!(back.root_label.as_deref(), Some("cidata"));
        assert!(back.dirs.is_empty());
        let names: Vec<&str> = back.files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["meta-data", "network-config", "user-data", "vendor-data"]
        );
        assert_eq!(
            String::from_utf8(back.files["meta-data"].clone()).unwrap(),
            format!(
                "instance-id: \"{UUID}\"\nlocal-hostname: \"wéb-1.ñubis.internal\"\n\
                 public-keys:\n  - \"ssh-ed25519 AAAAC3Nza josé@portátil 🔑\"\n"
            )
        );
        assert_eq!(back.files["user-data"], drive.user_data.unwrap());
        assert_eq!(
            back.files["vendor-data"],
            b"#cloud-config\npackages: [htop]\n"
        );
        let config: Value = serde_json::from_slice(&back.files["network-config"]).unwrap();
        assert_eq!(
            config,
            json!({
                "version": 2,
                "ethernets": {
                    "tap0": {
                        "match": {"macaddress": "52:54:00:ab:cd:ef"},
                        "mtu": 1500,
                        "addresses": ["10.0.0.5/24"],
                        "routes": [{"to": "0.0.0.0/0", "via": "10.0.0.1"}],
                        "nameservers": {"addresses": ["10.0.0.1"]}
                    }
                }
            })
        );
    }

    #[test]
    fn blkid_reports_vfat_and_label() {
        for flavor in [DriveFlavor::ConfigDrive2, DriveFlavor::NoCloud] {
            let (_dir, path) = write_temp(&drive(), flavor);
            let Some(tags) = blkid_export(&path) else {
                return;
            };
            assert_eq!(
                tags.get("TYPE").map(String::as_str),
                Some("vfat"),
                "{tags:?}"
            );
            assert_eq!(
                tags.get("LABEL").map(String::as_str),
                Some(flavor.label()),
                "{tags:?}"
            );
            // Boot sector and root directory agree.
            assert_eq!(
                tags.get("LABEL_FATBOOT").map(String::as_str),
                Some(flavor.label()),
                "{tags:?}"
            );
            // What cloud-init runs (through the cache-less form).
            let out = run(
                "blkid",
                &[
                    "-c",
                    "/dev/null",
                    "-o",
                    "value",
                    "-s",
                    "LABEL",
                    path.to_str().unwrap(),
                ],
            )
            .unwrap();
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                format!("{}\n", flavor.label())
            );
        }
    }

    #[test]
    fn fsck_and_mtools_accept_the_image() {
        let (_dir, nocloud) = write_temp(&drive(), DriveFlavor::NoCloud);
        let (_dir, path) = write_temp(&drive(), DriveFlavor::ConfigDrive2);
        let image = path.to_str().unwrap();
        for image in [image, nocloud.to_str().unwrap()] {
            if let Some(out) = run("fsck.vfat", &["-n", image]) {
                // Exit status 0: no problem found (subdirectories' `.` and
                // `..` in place, see fix_dot_entries).
                assert!(out.status.success(), "fsck.vfat: {out:?}");
            }
        }
        if let Some(out) = run("mtype", &["-i", image, "::openstack/latest/user_data"]) {
            assert!(out.status.success(), "mtype: {out:?}");
            assert_eq!(out.stdout, drive().user_data.unwrap());
        }
        if let Some(out) = run("mdir", &["-i", image, "-b", "::openstack"]) {
            assert!(out.status.success(), "mdir: {out:?}");
            let listing = String::from_utf8(out.stdout).unwrap();
            assert!(listing.contains("::/openstack/latest/"), "{listing}");
            assert!(listing.contains("::/openstack/2012-08-10/"), "{listing}");
        }
        if let Some(out) = run("mdir", &["-i", image, "::openstack/latest"]) {
            let listing = String::from_utf8(out.stdout).unwrap();
            assert!(listing.contains("1980-01-01"), "{listing}");
            assert!(listing.contains("meta_data.json"), "{listing}");
        }
    }

    #[test]
    fn dot_entries_lead_every_subdirectory() {
        let files = vec![
            ("a/b/c/deep.txt".to_string(), b"deep".to_vec()),
            ("a/b/other_long_name.json".to_string(), b"{}".to_vec()),
            ("a/top".to_string(), Vec::new()),
        ];
        let image = build_image("config-2", &files).unwrap();
        let layout = FatLayout::read(&image).unwrap();
        let root = &image[layout.root_start..layout.root_start + layout.root_len];
        let mut pending = subdirectories(root);
        let mut seen = 0;
        while let Some(dir) = pending.pop() {
            seen += 1;
            let entries = &image[layout.cluster(dir).unwrap()];
            assert_eq!(&entries[..11], DOT);
            assert_eq!(&entries[DIR_ENTRY..DIR_ENTRY + 11], DOTDOT);
            pending.extend(subdirectories(entries));
        }
        assert_eq!(seen, 3);
        // A directory not laid out as fatfs 0.3 does is refused, not mangled.
        let mut odd = vec![0u8; 4 * DIR_ENTRY];
        odd[0] = b'X';
        assert!(fix_dots(&mut odd).is_err());
        assert!(fix_dots(&mut [0u8; 8]).is_err());
    }

    #[test]
    fn user_data_of_64_kib_fits_and_large_content_grows_the_image() {
        let mut drive = drive();
        let user_data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        drive.user_data = Some(user_data.clone());
        let (_dir, path) = write_temp(&drive, DriveFlavor::ConfigDrive2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MIN_SIZE);
        assert_eq!(
            read_back(&path).files["openstack/latest/user_data"],
            user_data
        );

        // Twice 5 MiB (two versions) needs a bigger image.
        let user_data: Vec<u8> = (0..5 << 20).map(|i| (i % 253) as u8).collect();
        drive.user_data = Some(user_data.clone());
        let (_dir, path) = write_temp(&drive, DriveFlavor::ConfigDrive2);
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size > 10 << 20 && size <= MAX_SIZE, "{size}");
        let back = read_back(&path);
        assert_eq!(back.files["openstack/latest/user_data"], user_data);
        assert_eq!(back.files["openstack/2012-08-10/user_data"], user_data);
        if let Some(out) = run("fsck.vfat", &["-n", path.to_str().unwrap()]) {
            assert!(out.status.success(), "fsck.vfat: {out:?}");
        }
    }

    #[test]
    fn content_over_the_limit_is_an_error_and_leaves_nothing() {
        let mut drive = drive();
        drive.user_data = Some(vec![0; 40 << 20]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.img");
        let err = write(&path, &drive, DriveFlavor::ConfigDrive2).unwrap_err();
        assert!(format!("{err:#}").contains("64 MiB"), "{err:#}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn every_image_size_formats() {
        // fatfs picks FAT12/16 and cluster sizes by size; none may fail.
        let files = vec![(
            "openstack/latest/meta_data.json".to_string(),
            b"{}".to_vec(),
        )];
        for mib in MIN_SIZE / MIB..=MAX_SIZE / MIB {
            let mut image = vec![0u8; (mib * MIB) as usize];
            format_image(&mut image, "config-2", 1).unwrap_or_else(|e| panic!("{mib} MiB: {e:#}"));
            let fs = fatfs::FileSystem::new(Cursor::new(&mut image[..]), fatfs::FsOptions::new())
                .unwrap();
            assert_ne!(fs.fat_type(), fatfs::FatType::Fat32, "{mib} MiB");
            assert_eq!(
                fs.read_volume_label_from_root_dir().unwrap().as_deref(),
                Some("config-2")
            );
        }
        assert_eq!(image_size(&files).unwrap(), MIN_SIZE);
    }

    #[test]
    fn replaces_atomically_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.img");
        std::fs::write(&path, b"old").unwrap();
        write(&path, &drive(), DriveFlavor::ConfigDrive2).unwrap();
        let first = std::fs::read(&path).unwrap();
        write(&path, &drive(), DriveFlavor::ConfigDrive2).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.img"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Different content, different volume id.
        let mut other = drive();
        other.meta_data["uuid"] = json!("another");
        write(&path, &other, DriveFlavor::ConfigDrive2).unwrap();
        assert_ne!(std::fs::read(&path).unwrap()[39..43], first[39..43]);
    }

    #[test]
    fn write_into_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent/config.img");
        let err = write(&path, &drive(), DriveFlavor::NoCloud).unwrap_err();
        assert!(format!("{err:#}").contains("config.tmp"), "{err:#}");
    }

    #[test]
    fn bad_metadata_is_an_error() {
        let cases = [
            json!(null),
            json!([]),
            json!({}),
            json!({"uuid": 7}),
            json!({"uuid": ""}),
            json!({"uuid": UUID, "hostname": 3}),
            json!({"uuid": UUID, "public_keys": 3}),
            json!({"uuid": UUID, "public_keys": {"a": 3}}),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.img");
        for (i, meta_data) in cases.into_iter().enumerate() {
            let drive = ConfigDrive {
                meta_data,
                ..drive()
            };
            let nocloud = write(&path, &drive, DriveFlavor::NoCloud);
            assert!(nocloud.is_err(), "case {i}");
            let config2 = write(&path, &drive, DriveFlavor::ConfigDrive2);
            // ConfigDrive2 passes hostname and keys through untouched.
            assert_eq!(config2.is_err(), i < 5, "case {i}");
        }
    }

    #[test]
    fn odd_inputs_never_panic() {
        let values = [
            json!(null),
            json!(true),
            json!(1.5e300),
            json!("text"),
            json!([1, [2, {"a": null}]]),
            json!({}),
            json!({"links": 1}),
            json!({"links": [1]}),
            json!({"links": [{"id": 1}]}),
            json!({"links": [{"type": "bond"}]}),
            json!({"links": [{"type": "vlan", "vlan_id": 99999}]}),
            json!({"links": [{"type": "vlan", "vlan_id": 5, "vlan_link": "nope"}]}),
            json!({"links": [{"id": "a"}, {"id": "a"}]}),
            json!({"links": [{"id": "a", "mtu": "x"}]}),
            json!({"networks": [{"link": "x", "type": "ipv4"}]}),
            json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv4"}]}),
            json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv4",
                "ip_address": "10.0.0.1", "netmask": "255.0.255.0"}]}),
            json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv4",
                "ip_address": "10.0.0.1/99"}]}),
            json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv6",
                "ip_address": "fe80::1", "netmask": "255.255.255.0"}]}),
            json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv4",
                "ip_address": "10.0.0.1", "netmask": "8", "routes": [{"network": "x"}]}]}),
            json!({"services": [{"type": "dns"}], "links": [{}]}),
            json!({"links": [{"id": "\u{2028}\u{85}\"\\\n"}]}),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.img");
        for network_data in &values {
            for vendor_data in &values {
                let drive = ConfigDrive {
                    network_data: network_data.clone(),
                    vendor_data: vendor_data.clone(),
                    ..drive()
                };
                for flavor in [DriveFlavor::ConfigDrive2, DriveFlavor::NoCloud] {
                    let _ = write(&path, &drive, flavor);
                }
            }
        }
    }

    #[test]
    fn network_config_covers_vlans_ipv6_and_dhcp() {
        let network_data = json!({
            "links": [
                {"id": "eth-a", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
                {"id": "vl", "type": "vlan", "vlan_id": 42, "vlan_link": "eth-a",
                 "vlan_mac_address": "52:54:00:00:00:02"},
                {"type": "ovs", "ethernet_mac_address": "52:54:00:00:00:03"}
            ],
            "networks": [
                {"link": "eth-a", "type": "ipv4_dhcp"},
                {"link": "eth-a", "type": "ipv6", "ip_address": "2001:db8::5",
                 "netmask": "ffff:ffff:ffff:ffff::",
                 "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}]},
                {"link": "vl", "type": "ipv4", "ip_address": "192.168.5.9/28",
                 "dns_nameservers": ["192.168.5.1"], "dns_search": ["corp.example"]},
                {"link": "", "type": "ipv6_slaac"}
            ],
            "services": [{"type": "dns", "address": "9.9.9.9"}, {"type": "ntp", "address": "x"}]
        });
        let config = network_config_v2(&network_data).unwrap().unwrap();
        assert_eq!(
            config,
            json!({
                "version": 2,
                "ethernets": {
                    "eth-a": {
                        "match": {"macaddress": "52:54:00:00:00:01"},
                        "dhcp4": true,
                        "addresses": ["2001:db8::5/64"],
                        "routes": [{"to": "::/0", "via": "2001:db8::1"}],
                        "nameservers": {"addresses": ["9.9.9.9"]}
                    },
                    "eth2": {
                        "match": {"macaddress": "52:54:00:00:00:03"},
                        "accept-ra": true,
                        "nameservers": {"addresses": ["9.9.9.9"]}
                    }
                },
                "vlans": {
                    "vl": {
                        "id": 42,
                        "link": "eth-a",
                        "macaddress": "52:54:00:00:00:02",
                        "addresses": ["192.168.5.9/28"],
                        "nameservers": {
                            "addresses": ["192.168.5.1", "9.9.9.9"],
                            "search": ["corp.example"]
                        }
                    }
                }
            })
        );
        assert_eq!(network_config_v2(&json!({})).unwrap(), None);
        assert_eq!(
            network_config_v2(&json!({"links": [], "services": []})).unwrap(),
            None
        );
        let err = network_config_v2(&json!({"links": [{"id": "b", "type": "bond"}]})).unwrap_err();
        assert!(format!("{err:#}").contains("bond"), "{err:#}");
    }

    #[test]
    fn yaml_scalars_escape_what_yaml_would_misread() {
        assert_eq!(yaml_string("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(
            yaml_string("x\u{2028}y\u{85}z\u{7f}"),
            r#""x\u2028y\u0085z\u007F""#
        );
        assert_eq!(yaml_string("héllo 🔑"), "\"héllo 🔑\"");
        // Still JSON meaning the same.
        let back: String = serde_json::from_str(&yaml_string("x\u{2028}\u{feff}")).unwrap();
        assert_eq!(back, "x\u{2028}\u{feff}");
    }

    #[test]
    fn prefix_lengths() {
        assert_eq!(
            cidr("10.1.2.3", Some("255.255.0.0")).unwrap(),
            "10.1.2.3/16"
        );
        assert_eq!(cidr("10.1.2.3", Some("0.0.0.0")).unwrap(), "10.1.2.3/0");
        assert_eq!(cidr("10.1.2.3", None).unwrap(), "10.1.2.3/32");
        assert_eq!(
            cidr("10.1.2.3", Some("255.255.255.255")).unwrap(),
            "10.1.2.3/32"
        );
        assert_eq!(cidr("10.1.2.3", Some("24")).unwrap(), "10.1.2.3/24");
        assert_eq!(
            cidr("2001:db8::1", Some("ffff:ffff::")).unwrap(),
            "2001:db8::1/32"
        );
        assert_eq!(cidr("2001:db8::1", None).unwrap(), "2001:db8::1/128");
        assert!(cidr("10.1.2.3", Some("255.0.255.0")).is_err());
        assert!(cidr("10.1.2.3", Some("33")).is_err());
        assert!(cidr("10.1.2.3", Some("ffff::")).is_err());
        assert!(cidr("nope", None).is_err());
    }
}
