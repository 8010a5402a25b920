//! `POST /servers`' body in Nova's v2.1 form, translated to the `/v1`
//! request (`CreateServer`) that `app::create_server` checks and carries
//! out. Whatever Nubis cannot honour is refused here with a clear 400 (or
//! 501), before anything is created.

use super::servers::last_segment;
use super::ComputeResult;
use crate::http::error::ApiError;
use crate::openstack::errors::{not_implemented, ComputeError};
use nubis_api::server_groups::SchedulerHints;
use nubis_api::servers::{CreateServer, NetworkRequest, UserData};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The request: `{"server": {...}, "os:scheduler_hints": {...}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    server: NovaServer,
    #[serde(default, rename = "os:scheduler_hints")]
    scheduler_hints: Option<BTreeMap<String, Value>>,
    /// Some clients send the hints under this older name.
    #[serde(default, rename = "OS-SCH-HNT:scheduler_hints")]
    scheduler_hints_old: Option<BTreeMap<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NovaServer {
    name: String,
    #[serde(rename = "flavorRef")]
    flavor_ref: String,
    #[serde(default, rename = "imageRef")]
    image_ref: Option<String>,
    /// A list of NICs, or (2.37) `"auto"` / `"none"`.
    #[serde(default)]
    networks: Option<Value>,
    #[serde(default)]
    key_name: Option<String>,
    #[serde(default)]
    user_data: Option<String>,
    /// A boolean, or the string forms clients send ("True", "true", "").
    #[serde(default)]
    config_drive: Option<Value>,
    #[serde(default)]
    security_groups: Option<Vec<NamedGroup>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    availability_zone: Option<String>,
    #[serde(default)]
    min_count: Option<Value>,
    #[serde(default)]
    max_count: Option<Value>,
    #[serde(default)]
    return_reservation_id: Option<Value>,
    #[serde(default, rename = "OS-DCF:diskConfig")]
    disk_config: Option<String>,
    #[serde(default, rename = "adminPass")]
    admin_pass: Option<String>,
    #[serde(default)]
    block_device_mapping_v2: Option<Value>,
    #[serde(default)]
    block_device_mapping: Option<Value>,
    #[serde(default)]
    personality: Option<Value>,
    #[serde(default, rename = "accessIPv4")]
    access_ipv4: Option<String>,
    #[serde(default, rename = "accessIPv6")]
    access_ipv6: Option<String>,
}

#[derive(Deserialize)]
struct NamedGroup {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NovaNic {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    fixed_ip: Option<String>,
    #[serde(default)]
    port: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

fn bad(message: impl Into<String>) -> ComputeError {
    ComputeError(ApiError::bad_request(message))
}

fn is_one(v: &Option<Value>) -> bool {
    match v {
        None => true,
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        Some(Value::String(s)) => s.trim() == "1",
        Some(_) => false,
    }
}

fn config_drive(v: &Option<Value>) -> ComputeResult<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" | "off" => Ok(false),
            "true" | "1" | "yes" | "on" => Ok(true),
            other => Err(bad(format!("Invalid config_drive value: {other}"))),
        },
        Some(other) => Err(bad(format!("Invalid config_drive value: {other}"))),
    }
}

/// NICs: absent or `"auto"` = Nubis's default (one NIC on the project's
/// `default` network, as `/v1`); `"none"` is refused (a Nubis server has at
/// least one NIC); a list of `{uuid, fixed_ip}`.
fn networks(v: Option<Value>) -> ComputeResult<Option<Vec<NetworkRequest>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "auto" => Ok(None),
        Some(Value::String(s)) if s == "none" => Err(bad(
            "networks \"none\": a Nubis server needs at least one network",
        )),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                let nic: NovaNic = serde_json::from_value(item)
                    .map_err(|e| bad(format!("Invalid input for field networks: {e}")))?;
                if nic.port.is_some() {
                    return Err(ComputeError(not_implemented(
                        "Booting on an existing port (networks[].port)",
                    )));
                }
                let _ = nic.tag;
                let network = nic
                    .uuid
                    .ok_or_else(|| bad("Invalid input for field networks: uuid is required"))?;
                let fixed_ip = nic
                    .fixed_ip
                    .map(|ip| {
                        ip.parse()
                            .map_err(|_| bad(format!("Invalid fixed IP address ({ip})")))
                    })
                    .transpose()?;
                out.push(NetworkRequest { network, fixed_ip });
            }
            Ok(Some(out))
        }
        Some(other) => Err(bad(format!("Invalid input for field networks: {other}"))),
    }
}

/// The image of a block device mapping that only boots an image onto the
/// server's local disk (`[{"uuid", "boot_index": 0, "source_type":
/// "image", "destination_type": "local"}]`); `None` for anything else.
fn image_onto_local_disk(bdm: &Value) -> Option<String> {
    let [one] = bdm.as_array()?.as_slice() else {
        return None;
    };
    let boots_first = one["boot_index"] == 0 || one["boot_index"] == "0";
    (boots_first && one["source_type"] == "image" && one["destination_type"] == "local")
        .then(|| one["uuid"].as_str().map(str::to_owned))
        .flatten()
}

/// The `/v1` request for a Nova create, or Nova's 400 saying what Nubis
/// does not do.
pub fn to_create_server(req: CreateRequest) -> ComputeResult<CreateServer> {
    let s = req.server;
    let name = s
        .name
        .parse()
        .map_err(|e| bad(format!("Invalid server name: {e}")))?;
    if !is_one(&s.min_count) || !is_one(&s.max_count) {
        return Err(bad(
            "Nubis creates one server per request (min_count = max_count = 1)",
        ));
    }
    if s.return_reservation_id.is_some() {
        return Err(bad("return_reservation_id is not supported by Nubis"));
    }
    // Newer clients (OSC 7+) describe booting from an image onto a local
    // disk as a block device mapping: that one is what Nubis does.
    let bdm_image = match (&s.block_device_mapping_v2, &s.block_device_mapping) {
        (None, None) => None,
        (Some(bdm), None) => Some(image_onto_local_disk(bdm).ok_or_else(|| {
            ComputeError(not_implemented(
                "Booting from volumes, or with more than the image's local disk (block_device_mapping_v2)",
            ))
        })?),
        _ => {
            return Err(ComputeError(not_implemented(
                "Booting from volumes (block_device_mapping)",
            )))
        }
    };
    if s.personality.is_some() {
        return Err(bad("Nubis injects no files (personality); use user_data"));
    }
    if s.admin_pass.is_some() {
        return Err(bad("Nubis sets no admin password; use key_name"));
    }
    if s.access_ipv4.is_some() || s.access_ipv6.is_some() {
        return Err(bad("accessIPv4/accessIPv6 are set by Nubis (floating IPs)"));
    }
    if s.disk_config.as_deref().is_some_and(|d| d != "MANUAL") {
        return Err(bad("OS-DCF:diskConfig: Nubis only does MANUAL"));
    }
    if s.availability_zone.as_deref().is_some_and(|z| z != "nova") {
        return Err(bad(
            "Invalid availability_zone: Nubis has one zone, \"nova\"",
        ));
    }
    if s.metadata.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(bad(
            "Nubis keeps no server metadata (its metadata_items quota is 0)",
        ));
    }
    let image = s
        .image_ref
        .as_deref()
        .map(last_segment)
        .filter(|i| !i.is_empty())
        .or_else(|| bdm_image.clone())
        .ok_or_else(|| bad("imageRef is required: Nubis boots servers from images"))?;
    if bdm_image.as_deref().is_some_and(|b| b != image) {
        return Err(bad(
            "block_device_mapping_v2 names another image than imageRef",
        ));
    }
    let user_data = s
        .user_data
        .map(|u| {
            UserData::try_from(u)
                .map_err(|e| bad(format!("Invalid input for field user_data: {e}")))
        })
        .transpose()?;
    let mut hints = req
        .scheduler_hints
        .or(req.scheduler_hints_old)
        .unwrap_or_default();
    let group = match hints.remove("group") {
        None => None,
        Some(Value::String(g)) => Some(g),
        Some(Value::Array(mut gs)) if gs.len() == 1 => match gs.remove(0) {
            Value::String(g) => Some(g),
            other => return Err(bad(format!("Invalid group hint: {other}"))),
        },
        Some(other) => return Err(bad(format!("Invalid group hint: {other}"))),
    };
    if let Some(other) = hints.keys().next() {
        return Err(bad(format!(
            "Scheduler hint {other} is not supported by Nubis (only group)"
        )));
    }
    Ok(CreateServer {
        name,
        image,
        flavor: Some(last_segment(&s.flavor_ref)),
        vcpus: None,
        memory_mib: None,
        disk_gib: None,
        networks: networks(s.networks)?,
        key_name: s.key_name,
        user_data,
        config_drive: config_drive(&s.config_drive)?,
        security_groups: s
            .security_groups
            .map(|gs| gs.into_iter().map(|g| g.name).collect()),
        bandwidth: None,
        traffic_quota: None,
        lease: None,
        scheduler_hints: group.map(|group| SchedulerHints {
            group: Some(group),
            accel: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(body: Value) -> ComputeResult<CreateServer> {
        // As `parse_body` does: a body that does not parse is a 400.
        let req = serde_json::from_value(body).map_err(|e| bad(e.to_string()))?;
        to_create_server(req)
    }

    #[test]
    fn a_nova_boot_becomes_a_v1_create() {
        let req = create(json!({"server": {
            "name": "web1", "flavorRef": "http://x/compute/flavors/f1", "imageRef": "img",
            "networks": [{"uuid": "n1", "fixed_ip": "10.0.0.5"}], "key_name": "k",
            "user_data": "aGVsbG8=", "config_drive": "True", "min_count": 1, "max_count": 1,
            "security_groups": [{"name": "web"}], "metadata": {}},
            "os:scheduler_hints": {"group": "g1"}}))
        .unwrap();
        assert_eq!(req.flavor.as_deref(), Some("f1"));
        assert_eq!(req.image, "img");
        let nics = req.networks.unwrap();
        assert_eq!(nics[0].network, "n1");
        assert_eq!(nics[0].fixed_ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(req.user_data.unwrap().bytes(), b"hello");
        assert!(req.config_drive);
        assert_eq!(req.security_groups.unwrap(), vec!["web".to_string()]);
        assert_eq!(req.scheduler_hints.unwrap().group.as_deref(), Some("g1"));
    }

    #[test]
    fn what_nubis_cannot_do_is_refused() {
        let base = json!({"name": "a", "flavorRef": "f", "imageRef": "i"});
        assert!(create(json!({"server": base})).is_ok());
        let with = |k: &str, v: Value| {
            let mut s = base.clone();
            s[k] = v;
            create(json!({ "server": s }))
        };
        assert!(with("networks", json!("auto")).unwrap().networks.is_none());
        for (k, v) in [
            ("user_data", json!("not base64!")),
            ("networks", json!("none")),
            ("networks", json!([{"uuid": "n", "fixed_ip": "nope"}])),
            ("metadata", json!({"a": "b"})),
            ("max_count", json!(2)),
            ("config_drive", json!("maybe")),
            ("bogus", json!(1)),
        ] {
            let e = with(k, v.clone())
                .err()
                .unwrap_or_else(|| panic!("{k}={v}"));
            assert_eq!(e.0.status, StatusCode::BAD_REQUEST, "{k}={v}");
        }
        let e = with("networks", json!([{"port": "p"}])).err().unwrap();
        assert_eq!(e.0.status, StatusCode::NOT_IMPLEMENTED);
        // The image onto the local disk (what OSC 7+ sends) is a plain boot.
        let local = json!([{"uuid": "i", "boot_index": 0, "source_type": "image",
            "destination_type": "local", "delete_on_termination": true}]);
        assert_eq!(
            with("block_device_mapping_v2", local.clone())
                .unwrap()
                .image,
            "i"
        );
        let mut other = local.clone();
        other[0]["uuid"] = json!("j");
        let e = with("block_device_mapping_v2", other).err().unwrap();
        assert_eq!(e.0.status, StatusCode::BAD_REQUEST, "another image");
        let mut volume = local;
        volume[0]["destination_type"] = json!("volume");
        let e = with("block_device_mapping_v2", volume).err().unwrap();
        assert_eq!(e.0.status, StatusCode::NOT_IMPLEMENTED, "boot from volume");
    }

    use axum::http::StatusCode;
}
