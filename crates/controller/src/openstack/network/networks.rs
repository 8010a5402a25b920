//! `/v2.0/networks`: the project's Nubis networks (each with its one
//! subnet, same id), its networks still waiting for a subnet
//! (`store::pending_networks`), and the floating-IP pools shown as shared
//! external networks (`router:external`), which floating IPs come from.

use super::body::{only, own_project, string, Body};
use super::error::{bad_request, not_found, NetworkResult};
use super::{parse_id, query, standard, Caller};
use crate::http::AppState;
use crate::store::pending_networks::PendingNetwork;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use nubis_api::floating_ips::FloatingIpPool;
use nubis_api::networks::Network;
use nubis_api::{Name, NetworkId, ProjectId};
use serde_json::{json, Map, Value};

/// The MTU guests get on a VXLAN overlay (1500 less VXLAN's 50 bytes).
const MTU: u32 = 1450;

fn network_body(
    id: String,
    name: &str,
    owner: Map<String, Value>,
    subnets: Vec<String>,
    external: bool,
) -> Value {
    let mut m = owner;
    for (k, v) in [
        ("id", json!(id)),
        ("name", json!(name)),
        ("status", json!("ACTIVE")),
        ("admin_state_up", json!(true)),
        ("shared", json!(external)),
        ("router:external", json!(external)),
        ("subnets", json!(subnets)),
        ("mtu", json!(MTU)),
        ("port_security_enabled", json!(true)),
        ("availability_zone_hints", json!([])),
        ("availability_zones", json!(["nova"])),
        ("ipv4_address_scope", Value::Null),
        ("ipv6_address_scope", Value::Null),
        ("is_default", json!(false)),
        ("l2_adjacency", json!(true)),
    ] {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// A Nubis network: one subnet, whose id is the network's.
pub fn nubis_network(n: &Network) -> Value {
    network_body(
        n.id.to_string(),
        &n.name,
        standard(&n.project, n.created_at),
        vec![n.id.to_string()],
        false,
    )
}

/// A network waiting for its subnet.
pub fn pending_network(p: &PendingNetwork) -> Value {
    network_body(
        p.id.to_string(),
        &p.name,
        standard(&p.project, p.created_at),
        vec![],
        false,
    )
}

/// A floating-IP pool: an external network of no project, with no subnet
/// a server can be put on.
pub fn pool_network(pool: &FloatingIpPool) -> Value {
    let mut owner = standard(&ProjectId(uuid::Uuid::nil()), chrono::DateTime::UNIX_EPOCH);
    owner.insert("tenant_id".into(), json!(""));
    owner.insert("project_id".into(), json!(""));
    owner.insert(
        "description".into(),
        json!(format!("floating IPs {} - {}", pool.first, pool.last)),
    );
    network_body(pool.id.to_string(), &pool.name, owner, vec![], true)
}

/// What a network id names, for the caller.
pub enum Found {
    Nubis(Network),
    Pending(PendingNetwork),
    Pool(FloatingIpPool),
}

/// The network `id` as `project` sees it (another project's is 404).
pub async fn find(state: &AppState, project: ProjectId, id: &str) -> NetworkResult<Found> {
    let network_id: NetworkId = parse_id("network", id)?;
    if let Ok(n) = state.store.network(project, &network_id.to_string()).await {
        if n.id == network_id {
            return Ok(Found::Nubis(n));
        }
    }
    if let Ok(p) = state.store.pending_network(project, network_id).await {
        return Ok(Found::Pending(p));
    }
    let pools = state.store.list_floating_ip_pools().await?;
    pools
        .into_iter()
        .find(|p| p.id.to_string() == id)
        .map(Found::Pool)
        .ok_or_else(|| not_found("network", id))
}

/// `GET /v2.0/networks` (the `default` network is made on first use, as
/// on `/v1`).
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> NetworkResult<Json<Value>> {
    let project = caller.user.project;
    state
        .store
        .ensure_default_network(project, &state.dns_zone)
        .await?;
    let mut all: Vec<Value> = state
        .store
        .list_networks(project)
        .await?
        .iter()
        .map(nubis_network)
        .collect();
    all.extend(
        state
            .store
            .list_pending_networks(project)
            .await?
            .iter()
            .map(pending_network),
    );
    all.extend(
        state
            .store
            .list_floating_ip_pools()
            .await?
            .iter()
            .map(pool_network),
    );
    Ok(Json(json!({"networks": query::filter(all, &params)})))
}

/// `GET /v2.0/networks/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> NetworkResult<Json<Value>> {
    let body = match find(&state, caller.user.project, &id).await? {
        Found::Nubis(n) => nubis_network(&n),
        Found::Pending(p) => pending_network(&p),
        Found::Pool(p) => pool_network(&p),
    };
    Ok(Json(json!({ "network": body })))
}

/// Attributes a network create may carry (with the values Nubis has).
const CREATE_ATTRIBUTES: &[&str] = &[
    "name",
    "admin_state_up",
    "shared",
    "router:external",
    "port_security_enabled",
    "description",
    "project_id",
    "tenant_id",
    "availability_zone_hints",
    "mtu",
];

/// `POST /v2.0/networks`: a network without a subnet yet (pending until
/// `POST /v2.0/subnets` gives it a range). Nubis networks are private,
/// up, with port security, in no availability zone: asking otherwise is
/// 400 and creates nothing.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Body,
) -> NetworkResult<(StatusCode, Json<Value>)> {
    let project = caller.user.project;
    let m = body.resource("network", CREATE_ATTRIBUTES)?;
    own_project(&m, &project.to_string())?;
    only(
        &m,
        "admin_state_up",
        &json!(true),
        "Nubis networks are always up",
    )?;
    only(
        &m,
        "shared",
        &json!(false),
        "Nubis networks belong to one project",
    )?;
    only(
        &m,
        "router:external",
        &json!(false),
        "external networks are Nubis's floating-IP pools, made by admins through /v1/floating-ip-pools",
    )?;
    only(
        &m,
        "port_security_enabled",
        &json!(true),
        "security groups always apply",
    )?;
    only(
        &m,
        "availability_zone_hints",
        &json!([]),
        "Nubis has no availability zones",
    )?;
    only(&m, "mtu", &json!(MTU), "the overlay's MTU is fixed")?;
    if string(&m, "description")?.is_some_and(|d| !d.is_empty()) {
        return Err(bad_request(
            "Nubis networks have no description; leave it out",
        ));
    }
    let name: Name = string(&m, "name")?
        .ok_or_else(|| bad_request("a Nubis network needs a name"))?
        .parse()
        .map_err(|e| bad_request(format!("Invalid input for name: {e}")))?;
    let pending = state
        .store
        .create_pending_network(project, name.as_str())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "network": pending_network(&pending) })),
    ))
}

/// `DELETE /v2.0/networks/{id}`: a network no server uses (409 otherwise,
/// as on `/v1`), or a pending one. Pools are the admins' (`/v1`).
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> NetworkResult<StatusCode> {
    let project = caller.user.project;
    match find(&state, project, &id).await? {
        Found::Nubis(n) => state.store.delete_network(project, n.id).await?,
        Found::Pending(p) => state.store.delete_pending_network(project, p.id).await?,
        Found::Pool(_) => {
            return Err(super::error::NetworkError(
                crate::http::error::ApiError::forbidden(
                    "floating-IP pools are managed by admins through /v1/floating-ip-pools",
                ),
            ))
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
