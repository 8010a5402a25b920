//! `/v2.0/ports`: each NIC of the project's servers is a port (device_id
//! the server, device_owner `compute:nova`, one fixed IP on its network's
//! one subnet). Nubis has no free-standing ports: a NIC is made with its
//! server, so creating, changing or deleting a port is 501.

use super::error::{not_found, NetworkError, NetworkResult};
use super::{parse_id, query, standard, Caller};
use crate::http::AppState;
use crate::store::ports::PortRecord;
use axum::extract::{Path, Query, State};
use axum::Json;
use nubis_api::{PortId, ProjectId};
use serde_json::{json, Value};

/// A port in Neutron's form; `groups` are its server's security groups.
pub fn port(p: &PortRecord, project: &ProjectId, groups: &[String]) -> Value {
    let mut m = standard(project, p.created_at);
    let status = if p.server_status == "running" {
        "ACTIVE"
    } else {
        "DOWN"
    };
    for (k, v) in [
        ("id", json!(p.id.to_string())),
        ("name", json!("")),
        ("network_id", json!(p.network.to_string())),
        ("mac_address", json!(p.mac)),
        (
            "fixed_ips",
            json!([{"subnet_id": p.network.to_string(), "ip_address": p.ip.to_string()}]),
        ),
        ("device_id", json!(p.server.to_string())),
        ("device_owner", json!("compute:nova")),
        ("status", json!(status)),
        ("admin_state_up", json!(true)),
        ("security_groups", json!(groups)),
        ("port_security_enabled", json!(true)),
        ("allowed_address_pairs", json!([])),
        ("extra_dhcp_opts", json!([])),
        ("binding:vnic_type", json!("normal")),
        ("dns_name", json!("")),
        ("propagate_uplink_status", json!(false)),
    ] {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// Every port of `project`, in Neutron's form.
pub async fn all(state: &AppState, project: ProjectId) -> NetworkResult<Vec<(PortRecord, Value)>> {
    let ports = state.store.project_ports(project).await?;
    let servers: Vec<_> = ports.iter().map(|p| p.server).collect();
    // One read for every port's groups, not one per port.
    let groups = state.store.security_groups_of_servers(&servers).await?;
    Ok(ports
        .into_iter()
        .map(|p| {
            let names: Vec<String> = groups
                .get(&p.server)
                .into_iter()
                .flatten()
                .map(ToString::to_string)
                .collect();
            let v = port(&p, &project, &names);
            (p, v)
        })
        .collect())
}

/// `GET /v2.0/ports` (filters: `device_id`, `network_id`, `mac_address`,
/// `fixed_ips=ip_address=...`, ...).
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> NetworkResult<Json<Value>> {
    let ports = all(&state, caller.user.project)
        .await?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    Ok(Json(json!({"ports": query::filter(ports, &params)})))
}

/// `GET /v2.0/ports/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> NetworkResult<Json<Value>> {
    let pid: PortId = parse_id("port", &id)?;
    all(&state, caller.user.project)
        .await?
        .into_iter()
        .find(|(p, _)| p.id == pid)
        .map(|(_, v)| Json(json!({ "port": v })))
        .ok_or_else(|| not_found("port", &id))
}

/// `POST /v2.0/ports`: 501, Nubis's NICs are made with their server.
pub async fn create(Caller(_caller): Caller) -> NetworkError {
    NetworkError(crate::http::error::ApiError::new(
        axum::http::StatusCode::NOT_IMPLEMENTED,
        "HTTPNotImplemented",
        "Nubis has no free-standing ports: a server's ports are made with the server. \
         Instead of --nic port-id=..., give the network and address when creating the server: \
         --nic net-id=NETWORK,v4-fixed-ip=ADDRESS (Nova's networks: [{\"uuid\", \"fixed_ip\"}]).",
    ))
}
