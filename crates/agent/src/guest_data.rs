//! What a guest is told about itself, in OpenStack's formats: the
//! `meta_data.json` and `network_data.json` of the config drive (and,
//! later, of the metadata service).

use base64::Engine;
use nubis_api::agent::InstanceSpec;
use serde_json::{json, Value};

/// `openstack/latest/meta_data.json`.
pub fn meta_data(spec: &InstanceSpec) -> Value {
    let public_keys: serde_json::Map<String, Value> = spec
        .guest
        .keys
        .iter()
        .map(|k| (k.name.clone(), Value::String(k.public_key.clone())))
        .collect();
    let keys: Vec<Value> = spec
        .guest
        .keys
        .iter()
        .map(|k| json!({"name": k.name, "type": "ssh", "data": k.public_key}))
        .collect();
    json!({
        "uuid": spec.id.to_string(),
        "name": spec.name,
        "hostname": spec.guest.hostname,
        "project_id": spec.guest.project.to_string(),
        "launch_index": 0,
        "availability_zone": "nubis",
        "public_keys": public_keys,
        "keys": keys,
    })
}

/// `openstack/latest/network_data.json`: static addresses per NIC.
pub fn network_data(spec: &InstanceSpec) -> Value {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    let mut services = Vec::new();
    for (i, nic) in spec.nics.iter().enumerate() {
        let link = format!("tap{i}");
        links.push(json!({
            "id": link, "type": "phy", "ethernet_mac_address": nic.mac, "mtu": 1500,
        }));
        let mut net = json!({
            "id": format!("network{i}"),
            "type": "ipv4",
            "link": link,
            "ip_address": nic.ip.to_string(),
            "netmask": nic.network.cidr.netmask().to_string(),
            "network_id": nic.network.id.to_string(),
            "routes": [],
        });
        // Only the first NIC carries the default route.
        if i == 0 {
            net["routes"] = json!([{
                "network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": nic.network.gateway.to_string(),
            }]);
            services.push(json!({"type": "dns", "address": nic.network.gateway.to_string()}));
        }
        networks.push(net);
    }
    json!({"links": links, "networks": networks, "services": services})
}

/// The user data's bytes (the spec carries base64).
pub fn user_data(spec: &InstanceSpec) -> Option<Vec<u8>> {
    spec.guest
        .user_data
        .as_deref()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
}
