//! A Nubis server in Nova's v2.1 shape: status and the `OS-EXT-STS` states
//! mapped from Nubis's desired and observed state, `addresses` keyed by
//! network name (fixed and floating, with MACs), `fault` when in error,
//! `hostId` as Nova makes it (a hash of project and host).

use super::links;
use crate::store::ServerRecord;
use chrono::{DateTime, SecondsFormat, Utc};
use nubis_api::agent::{ObservedPower, PowerState};
use nubis_api::floating_ips::FloatingIp;
use nubis_api::servers::{Server, ServerStatus};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha224};

/// Nova's power states (nova/compute/power_state.py).
const NOSTATE: u8 = 0;
const RUNNING: u8 = 1;
const SHUTDOWN: u8 = 4;

/// Nova's view of a server's state: status, vm_state, task_state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NovaState {
    pub status: &'static str,
    pub vm_state: &'static str,
    pub task_state: Option<&'static str>,
}

/// Maps Nubis's status (and the desired power, for the in-between states)
/// to Nova's. A reboot on Nubis is always a reset: `HARD_REBOOT`.
pub fn nova_state(status: ServerStatus, desired: PowerState) -> NovaState {
    let s = |status, vm_state, task_state| NovaState {
        status,
        vm_state,
        task_state,
    };
    match status {
        ServerStatus::Building => s("BUILD", "building", Some("spawning")),
        ServerStatus::Running => s("ACTIVE", "active", None),
        ServerStatus::Stopping => s("ACTIVE", "active", Some("powering-off")),
        ServerStatus::Stopped if desired == PowerState::Running => {
            s("SHUTOFF", "stopped", Some("powering-on"))
        }
        ServerStatus::Stopped => s("SHUTOFF", "stopped", None),
        ServerStatus::Rebooting => s("HARD_REBOOT", "active", Some("rebooting_hard")),
        // As in Nova, a server being deleted keeps its status until it is
        // gone (clients' "wait for delete" stop at DELETED, so it is never
        // shown: the record vanishes once its host has cleaned up).
        ServerStatus::Deleting if desired == PowerState::Running => {
            s("ACTIVE", "active", Some("deleting"))
        }
        ServerStatus::Deleting => s("SHUTOFF", "stopped", Some("deleting")),
        ServerStatus::Error => s("ERROR", "error", None),
    }
}

/// Nova's time format: `2026-11-30T05:48:48Z`.
pub fn nova_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Nova's `hostId`: SHA-224 of project id and host, so that a tenant can
/// tell its servers apart by host without learning the host.
pub fn host_id(project: &str, host: Option<&str>) -> String {
    match host {
        None => String::new(),
        Some(host) => hex::encode(Sha224::digest(format!("{project}{host}").as_bytes())),
    }
}

/// When the server last changed as far as Nubis records it.
pub fn updated_at(r: &ServerRecord) -> DateTime<Utc> {
    r.launched_at.map_or(r.created_at, |l| l.max(r.created_at))
}

/// The flavor reference of a server: its flavor's id, or (sized by hand on
/// `/v1`) a made-up id that names the sizes.
pub fn flavor_ref(r: &ServerRecord) -> String {
    match r.flavor {
        Some(f) => f.to_string(),
        None => format!("custom-{}-{}-{}", r.vcpus, r.memory_mib, r.disk_gib),
    }
}

/// What the full view needs beside the record and its `/v1` view.
pub struct ViewContext<'a> {
    /// Public base URL for links.
    pub base: &'a str,
    /// The owner's user id (Nubis: one user per project).
    pub user_id: &'a str,
    /// The project's floating IPs (those of this server are shown).
    pub floating: &'a [FloatingIp],
}

/// `addresses`: `{network name: [{addr, version, OS-EXT-IPS:type, OS-EXT-IPS-MAC:mac_addr}]}`.
pub fn addresses(server: &Server, floating: &[FloatingIp]) -> Value {
    let mut out: Map<String, Value> = Map::new();
    for a in &server.addresses {
        let list = out
            .entry(a.network_name.clone())
            .or_insert_with(|| json!([]));
        let entries = list.as_array_mut().expect("an array");
        entries.push(json!({
            "addr": a.ip.to_string(),
            "version": 4,
            "OS-EXT-IPS:type": "fixed",
            "OS-EXT-IPS-MAC:mac_addr": a.mac,
        }));
        for f in floating
            .iter()
            .filter(|f| f.server == Some(server.id) && f.fixed_ip == Some(a.ip))
        {
            entries.push(json!({
                "addr": f.ip.to_string(),
                "version": 4,
                "OS-EXT-IPS:type": "floating",
                "OS-EXT-IPS-MAC:mac_addr": a.mac,
            }));
        }
    }
    Value::Object(out)
}

/// The short view of lists: id, name, links.
pub fn summary(base: &str, r: &ServerRecord) -> Value {
    let id = r.id.to_string();
    json!({"id": id, "name": r.name, "links": links(base, "servers", &id)})
}

/// The full view of `GET /servers/{id}` and `/servers/detail`.
pub fn detail(ctx: &ViewContext<'_>, r: &ServerRecord, server: &Server) -> Value {
    let id = r.id.to_string();
    let project = r.project.to_string();
    let state = nova_state(server.status, r.power);
    let power_state = match r.observed_power {
        Some(ObservedPower::Running) => RUNNING,
        Some(ObservedPower::Stopped) => SHUTDOWN,
        _ => NOSTATE,
    };
    let flavor = flavor_ref(r);
    let image = r.image.to_string();
    let host = r.host.map(|h| h.to_string());
    let access_v4 = ctx
        .floating
        .iter()
        .find(|f| f.server == Some(r.id))
        .map(|f| f.ip.to_string())
        .unwrap_or_default();
    let mut body = json!({
        "id": id,
        "name": r.name,
        "status": state.status,
        "OS-EXT-STS:vm_state": state.vm_state,
        "OS-EXT-STS:task_state": state.task_state,
        "OS-EXT-STS:power_state": power_state,
        "addresses": addresses(server, ctx.floating),
        "accessIPv4": access_v4,
        "accessIPv6": "",
        "flavor": {"id": flavor, "links": [{"rel": "bookmark",
            "href": format!("{}/compute/flavors/{flavor}", ctx.base)}]},
        "image": {"id": image, "links": [{"rel": "bookmark",
            "href": format!("{}/compute/images/{image}", ctx.base)}]},
        "key_name": r.key_name,
        "user_id": ctx.user_id,
        "tenant_id": project,
        "created": nova_time(r.created_at),
        "updated": nova_time(updated_at(r)),
        "hostId": host_id(&project, host.as_deref()),
        "OS-EXT-AZ:availability_zone": "nova",
        "OS-DCF:diskConfig": "MANUAL",
        "OS-SRV-USG:launched_at": r.launched_at.map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        "OS-SRV-USG:terminated_at": Value::Null,
        "config_drive": if r.config_drive { "True" } else { "" },
        "metadata": {},
        "security_groups": server.security_groups.iter()
            .map(|name| json!({"name": name})).collect::<Vec<_>>(),
        "links": links(ctx.base, "servers", &id),
        "progress": if state.status == "ACTIVE" { 100 } else { 0 },
        "os-extended-volumes:volumes_attached": [],
    });
    if let (ServerStatus::Error, Some(message)) = (server.status, &r.fault) {
        body["fault"] = json!({
            "code": 500,
            "message": message,
            "created": nova_time(updated_at(r)),
        });
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_novas() {
        let st = |s, p| nova_state(s, p).status;
        assert_eq!(st(ServerStatus::Building, PowerState::Running), "BUILD");
        assert_eq!(st(ServerStatus::Running, PowerState::Running), "ACTIVE");
        assert_eq!(st(ServerStatus::Stopped, PowerState::Stopped), "SHUTOFF");
        assert_eq!(
            st(ServerStatus::Rebooting, PowerState::Running),
            "HARD_REBOOT"
        );
        assert_eq!(st(ServerStatus::Error, PowerState::Running), "ERROR");
        let deleting = nova_state(ServerStatus::Deleting, PowerState::Stopped);
        assert_eq!(
            (deleting.status, deleting.task_state),
            ("SHUTOFF", Some("deleting"))
        );
        let stopping = nova_state(ServerStatus::Stopping, PowerState::Stopped);
        assert_eq!(
            (stopping.status, stopping.task_state),
            ("ACTIVE", Some("powering-off"))
        );
        let starting = nova_state(ServerStatus::Stopped, PowerState::Running);
        assert_eq!(starting.task_state, Some("powering-on"));
    }

    #[test]
    fn host_ids_hash_project_and_host() {
        assert_eq!(host_id("p", None), "");
        let a = host_id("p1", Some("h1"));
        assert_eq!(a.len(), 56);
        assert_ne!(a, host_id("p2", Some("h1")));
        assert_eq!(a, host_id("p1", Some("h1")));
    }
}
