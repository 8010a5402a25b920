//! The NoCloud seed: `meta-data`, `vendor-data` and a cloud-init network
//! config (version 2) converted from OpenStack `network_data`.

use super::*;
use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

pub(super) fn nocloud_files(drive: &ConfigDrive) -> anyhow::Result<Vec<DriveFile>> {
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
pub(super) fn instance_uuid(meta_data: &Value) -> anyhow::Result<&str> {
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
pub(super) fn nocloud_meta_data(meta_data: &Value) -> anyhow::Result<String> {
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
pub(super) fn nocloud_vendor_data(vendor_data: &Value) -> anyhow::Result<Option<String>> {
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

pub(super) fn is_empty_json(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(object) => object.is_empty(),
        _ => false,
    }
}

/// A YAML double-quoted scalar holding `s` exactly (also a JSON string).
pub(super) fn yaml_string(s: &str) -> String {
    // Serializing a &str cannot fail; the fallback only avoids a panic path.
    yaml_safe(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()))
}

/// Makes JSON text valid YAML with the same meaning. serde_json leaves some
/// characters raw that YAML forbids or treats as line breaks (DEL, C1
/// controls, U+2028/2029, BOM, U+FFFE/FFFF); outside strings JSON text is
/// plain ASCII, so those can only be inside strings, where a `\uXXXX` escape
/// means the same in both languages.
pub(super) fn yaml_safe(json: &str) -> String {
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
pub(super) fn network_config_v2(network_data: &Value) -> anyhow::Result<Option<Value>> {
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

pub(super) fn physical_entry(entry: &mut Map<String, Value>, mac: Option<&str>) {
    if let Some(mac) = mac {
        // cloud-init compares MACs in lowercase.
        entry.insert(
            "match".into(),
            json!({ "macaddress": mac.to_ascii_lowercase() }),
        );
    }
}

/// The array at `object[key]`; empty when absent or null.
pub(super) fn array_field<'a>(
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
pub(super) fn str_field<'a>(
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
pub(super) fn dns_servers(services: &[Value], what: &str) -> anyhow::Result<Vec<String>> {
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
pub(super) fn cidr(ip: &str, netmask: Option<&str>) -> anyhow::Result<String> {
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
pub(super) fn prefix_len(addr: IpAddr, mask: &str) -> anyhow::Result<u32> {
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

pub(super) fn push_unique(entry: &mut Map<String, Value>, key: &str, value: Value) {
    let list = entry.entry(key.to_string()).or_insert_with(|| json!([]));
    if let Value::Array(items) = list {
        if !items.contains(&value) {
            items.push(value);
        }
    }
}

pub(super) fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
