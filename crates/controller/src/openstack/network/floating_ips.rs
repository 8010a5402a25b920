//! `/v2.0/floatingips` over Nubis's floating IPs: `floating_network_id` is
//! the pool (shown as an external network), `port_id` the server NIC it
//! maps to. Nubis maps a floating IP to a server's first NIC, so a port
//! must be a first NIC; association goes through the same domain rules as
//! `/v1` (`app::floating_ips`).

use super::body::{only, own_project, string, Body};
use super::error::{bad_request, not_found, NetworkError, NetworkResult};
use super::{parse_id, query, standard, Caller};
use crate::http::AppState;
use crate::store::ports::PortRecord;
use crate::store::StoreError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use nubis_api::floating_ips::{FloatingIp, FloatingIpPool};
use nubis_api::{FloatingIpId, ProjectId, ServerId};
use serde_json::{json, Map, Value};

/// A floating IP in Neutron's form.
fn floating_ip(ip: &FloatingIp, pools: &[FloatingIpPool], ports: &[PortRecord]) -> Value {
    let mut m = standard(&ip.project, ip.created_at);
    let pool = pools
        .iter()
        .find(|p| p.name == ip.pool)
        .map(|p| p.id.to_string());
    let port = ip.server.and_then(|s| {
        ports
            .iter()
            .find(|p| p.server == s && Some(p.ip) == ip.fixed_ip)
    });
    for (k, v) in [
        ("id", json!(ip.id.to_string())),
        ("floating_ip_address", json!(ip.ip.to_string())),
        ("floating_network_id", json!(pool)),
        (
            "fixed_ip_address",
            json!(ip.fixed_ip.map(|f| f.to_string())),
        ),
        ("port_id", json!(port.map(|p| p.id.to_string()))),
        ("router_id", Value::Null),
        (
            "status",
            json!(if ip.server.is_some() {
                "ACTIVE"
            } else {
                "DOWN"
            }),
        ),
        ("port_details", Value::Null),
        ("port_forwardings", json!([])),
        ("dns_domain", json!("")),
        ("dns_name", json!("")),
        ("qos_policy_id", Value::Null),
    ] {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// What the forms of a project's floating IPs are made from.
struct Context {
    pools: Vec<FloatingIpPool>,
    ports: Vec<PortRecord>,
}

async fn context(state: &AppState, project: ProjectId) -> NetworkResult<Context> {
    Ok(Context {
        pools: state.store.list_floating_ip_pools().await?,
        ports: state.store.project_ports(project).await?,
    })
}

/// `GET /v2.0/floatingips`.
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> NetworkResult<Json<Value>> {
    let project = caller.user.project;
    let c = context(&state, project).await?;
    let all = state
        .store
        .list_floating_ips(project)
        .await?
        .iter()
        .map(|ip| floating_ip(ip, &c.pools, &c.ports))
        .collect();
    Ok(Json(json!({"floatingips": query::filter(all, &params)})))
}

async fn find(state: &AppState, project: ProjectId, id: &str) -> NetworkResult<FloatingIp> {
    let fid: FloatingIpId = parse_id("floatingip", id)?;
    state
        .store
        .floating_ip(project, fid)
        .await
        .map_err(|_| not_found("floatingip", id))
}

/// `GET /v2.0/floatingips/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> NetworkResult<Json<Value>> {
    let project = caller.user.project;
    let ip = find(&state, project, &id).await?;
    let c = context(&state, project).await?;
    Ok(Json(
        json!({"floatingip": floating_ip(&ip, &c.pools, &c.ports)}),
    ))
}

/// The server a `port_id` (and optional `fixed_ip_address`) maps to:
/// a first NIC of the project's servers.
fn server_of_port(m: &Map<String, Value>, ports: &[PortRecord]) -> NetworkResult<Option<ServerId>> {
    let Some(port_id) = string(m, "port_id")? else {
        if m.get("fixed_ip_address").is_some_and(|v| !v.is_null()) {
            return Err(bad_request("fixed_ip_address needs a port_id"));
        }
        return Ok(None);
    };
    let port = ports
        .iter()
        .find(|p| p.id.to_string() == port_id)
        .ok_or_else(|| not_found("port", port_id))?;
    let first = ports.iter().find(|p| p.server == port.server);
    if first.map(|p| p.id) != Some(port.id) {
        return Err(bad_request(
            "Nubis maps a floating IP to a server's first port; give that port",
        ));
    }
    if let Some(fixed) = string(m, "fixed_ip_address")? {
        if fixed != port.ip.to_string() {
            return Err(bad_request(format!(
                "fixed_ip_address {fixed} is not an address of port {port_id}"
            )));
        }
    }
    Ok(Some(port.server))
}

/// Maps `ip` to `server` through the domain rules, telling the agents.
async fn associate(
    state: &AppState,
    project: ProjectId,
    ip: FloatingIpId,
    server: Option<ServerId>,
) -> NetworkResult<FloatingIp> {
    let done = crate::app::floating_ips::set_server(&state.store, project, ip, server)
        .await
        .map_err(|e| match e {
            crate::app::AppError::Store(StoreError::NotFound) => {
                not_found("floatingip", &ip.to_string())
            }
            other => other.into(),
        })?;
    state.desired_state_changed();
    Ok(done)
}

/// `POST /v2.0/floatingips`: one from pool `floating_network_id`,
/// optionally mapped to `port_id` at once. Nubis picks the address.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Body,
) -> NetworkResult<(StatusCode, Json<Value>)> {
    let project = caller.user.project;
    let m = body.resource(
        "floatingip",
        &[
            "floating_network_id",
            "port_id",
            "fixed_ip_address",
            "floating_ip_address",
            "subnet_id",
            "description",
            "project_id",
            "tenant_id",
            "dns_domain",
            "dns_name",
            "qos_policy_id",
        ],
    )?;
    own_project(&m, &project.to_string())?;
    for key in ["floating_ip_address", "subnet_id", "qos_policy_id"] {
        only(
            &m,
            key,
            &Value::Null,
            "Nubis picks the floating IP from the pool",
        )?;
    }
    for key in ["description", "dns_domain", "dns_name"] {
        if string(&m, key)?.is_some_and(|d| !d.is_empty()) {
            return Err(bad_request(format!("Nubis floating IPs have no {key}")));
        }
    }
    let network = string(&m, "floating_network_id")?
        .ok_or_else(|| bad_request("Invalid input: floating_network_id is required"))?;
    let c = context(&state, project).await?;
    let pool = c
        .pools
        .iter()
        .find(|p| p.id.to_string() == network)
        .ok_or_else(|| not_found("network", network))?;
    let server = server_of_port(&m, &c.ports)?;
    let ip = state
        .store
        .allocate_floating_ip_at(project, Some(&pool.name), state.clock.now())
        .await?;
    let ip = match server {
        Some(s) => match associate(&state, project, ip.id, Some(s)).await {
            Ok(ip) => ip,
            Err(e) => {
                // Nothing changes when the mapping is refused.
                state
                    .store
                    .release_floating_ip_at(project, ip.id, state.clock.now())
                    .await?;
                return Err(e);
            }
        },
        None => ip,
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({"floatingip": floating_ip(&ip, &c.pools, &c.ports)})),
    ))
}

/// `PUT /v2.0/floatingips/{id}`: `port_id` maps it (`server add floating
/// ip`), null unmaps it.
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Body,
) -> NetworkResult<Json<Value>> {
    let project = caller.user.project;
    let current = find(&state, project, &id).await?;
    let m = body.resource(
        "floatingip",
        &["port_id", "fixed_ip_address", "description"],
    )?;
    if string(&m, "description")?.is_some_and(|d| !d.is_empty()) {
        return Err(bad_request("Nubis floating IPs have no description"));
    }
    let c = context(&state, project).await?;
    let server = if m.contains_key("port_id") {
        server_of_port(&m, &c.ports)?
    } else {
        current.server
    };
    let ip = associate(&state, project, current.id, server).await?;
    Ok(Json(
        json!({"floatingip": floating_ip(&ip, &c.pools, &c.ports)}),
    ))
}

/// `DELETE /v2.0/floatingips/{id}`: back to its pool.
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> NetworkResult<StatusCode> {
    let project = caller.user.project;
    let ip = find(&state, project, &id).await?;
    state
        .store
        .release_floating_ip_at(project, ip.id, state.clock.now())
        .await
        .map_err(|e| match e {
            StoreError::NotFound => not_found("floatingip", &id),
            other => NetworkError::from(other),
        })?;
    state.desired_state_changed();
    Ok(StatusCode::NO_CONTENT)
}
