//! `/v2.0/subnets`: the one subnet of each Nubis network (id = the
//! network's id). Creating a subnet on a pending network gives it its
//! range: it becomes a Nubis network under the same id, with every rule of
//! `/v1`'s network create (tenant pools, no overlap, quota). Deleting the
//! subnet makes the network pending again.

use super::body::{only, own_project, string, Body};
use super::error::{bad_request, not_found, NetworkError, NetworkResult};
use super::networks::{find, Found};
use super::{parse_id, query, standard, Caller};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::networks::NewNetwork;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use nubis_api::networks::{Cidr, Network};
use nubis_api::NetworkId;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

/// The ranges servers get addresses from: every host address but the
/// gateway (as the store allocates them).
fn allocation_pools(cidr: Cidr, gateway: Ipv4Addr) -> Vec<Value> {
    let first = u32::from(cidr.first_host());
    let last = u32::from(cidr.broadcast()) - 1;
    let gw = u32::from(gateway);
    let mut pools = Vec::new();
    let mut push = |a: u32, b: u32| {
        if a <= b {
            pools.push(json!({"start": Ipv4Addr::from(a).to_string(), "end": Ipv4Addr::from(b).to_string()}));
        }
    };
    if (first..=last).contains(&gw) {
        push(first, gw - 1);
        push(gw + 1, last);
    } else {
        push(first, last);
    }
    pools
}

/// A Nubis network's subnet, named `name`.
pub fn subnet(n: &Network, name: &str) -> Value {
    let mut m = standard(&n.project, n.created_at);
    for (k, v) in [
        ("id", json!(n.id.to_string())),
        ("name", json!(name)),
        ("network_id", json!(n.id.to_string())),
        ("ip_version", json!(4)),
        ("cidr", json!(n.cidr.to_string())),
        ("gateway_ip", json!(n.gateway.to_string())),
        ("enable_dhcp", json!(true)),
        (
            "allocation_pools",
            json!(allocation_pools(n.cidr, n.gateway)),
        ),
        ("dns_nameservers", json!([])),
        ("host_routes", json!([])),
        ("ipv6_ra_mode", Value::Null),
        ("ipv6_address_mode", Value::Null),
        ("subnetpool_id", Value::Null),
        ("segment_id", Value::Null),
        ("service_types", json!([])),
        ("dns_publish_fixed_ip", json!(false)),
    ] {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// `GET /v2.0/subnets`.
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
    let names = state.store.subnet_names(project).await?;
    let all: Vec<Value> = state
        .store
        .list_networks(project)
        .await?
        .iter()
        .map(|n| subnet(n, names.get(&n.id).unwrap_or(&n.name)))
        .collect();
    Ok(Json(json!({"subnets": query::filter(all, &params)})))
}

/// The subnet `id` of the caller's project.
async fn find_subnet(state: &AppState, caller: &Caller, id: &str) -> NetworkResult<Value> {
    let project = caller.0.user.project;
    let network_id: NetworkId = parse_id("subnet", id)?;
    let n = state
        .store
        .network(project, &network_id.to_string())
        .await
        .ok()
        .filter(|n| n.id == network_id)
        .ok_or_else(|| not_found("subnet", id))?;
    let names = state.store.subnet_names(project).await?;
    Ok(subnet(&n, names.get(&n.id).unwrap_or(&n.name)))
}

/// `GET /v2.0/subnets/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> NetworkResult<Json<Value>> {
    Ok(Json(
        json!({"subnet": find_subnet(&state, &caller, &id).await?}),
    ))
}

const CREATE_ATTRIBUTES: &[&str] = &[
    "name",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "enable_dhcp",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "description",
    "project_id",
    "tenant_id",
    "subnetpool_id",
    "use_default_subnet_pool",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "segment_id",
    "service_types",
];

/// `POST /v2.0/subnets`: the range of a pending network (see the module).
/// A second subnet on a network is 409: Nubis networks have one subnet.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Body,
) -> NetworkResult<(StatusCode, Json<Value>)> {
    let project = caller.user.project;
    let m = body.resource("subnet", CREATE_ATTRIBUTES)?;
    own_project(&m, &project.to_string())?;
    only(&m, "ip_version", &json!(4), "Nubis networks are IPv4")?;
    only(
        &m,
        "enable_dhcp",
        &json!(true),
        "Nubis networks always serve DHCP",
    )?;
    only(
        &m,
        "host_routes",
        &json!([]),
        "Nubis networks have no extra routes",
    )?;
    only(
        &m,
        "dns_nameservers",
        &json!([]),
        "the network's own DNS server is handed out",
    )?;
    only(
        &m,
        "service_types",
        &json!([]),
        "Nubis has no service subnets",
    )?;
    for key in [
        "subnetpool_id",
        "ipv6_ra_mode",
        "ipv6_address_mode",
        "segment_id",
    ] {
        only(&m, key, &Value::Null, "not a Nubis feature")?;
    }
    only(&m, "use_default_subnet_pool", &json!(false), "give a cidr")?;
    if string(&m, "description")?.is_some_and(|d| !d.is_empty()) {
        return Err(bad_request(
            "Nubis subnets have no description; leave it out",
        ));
    }
    let network_id = string(&m, "network_id")?
        .ok_or_else(|| bad_request("Invalid input: network_id is required"))?;
    let cidr: Cidr = string(&m, "cidr")?
        .ok_or_else(|| bad_request("Invalid input: a Nubis subnet needs a cidr"))?
        .parse()
        .map_err(|e| bad_request(format!("Invalid input for cidr: {e}")))?;
    let gateway = match m.get("gateway_ip") {
        None => cidr.first_host(),
        Some(Value::String(g)) => {
            let g: Ipv4Addr = g
                .parse()
                .map_err(|_| bad_request(format!("Invalid input for gateway_ip: '{g}'")))?;
            if !cidr.is_host(g) {
                return Err(bad_request(format!(
                    "Invalid input for gateway_ip: {g} is not a host address of {cidr}"
                )));
            }
            g
        }
        Some(_) => return Err(bad_request("Nubis subnets always have a gateway_ip")),
    };
    if let Some(pools) = m.get("allocation_pools") {
        if *pools != json!(allocation_pools(cidr, gateway)) {
            return Err(bad_request(format!(
                "Nubis allocates from every host address but the gateway: leave allocation_pools \
                 out or give {}",
                json!(allocation_pools(cidr, gateway))
            )));
        }
    }
    let name = string(&m, "name")?.unwrap_or_default().to_owned();
    if name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(bad_request(
            "Invalid input for name: at most 255 characters",
        ));
    }
    let pending = match find(&state, project, network_id)
        .await
        .map_err(|_| not_found("network", network_id))?
    {
        Found::Pending(p) => p,
        Found::Nubis(_) => {
            return Err(NetworkError(ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                "Nubis networks have exactly one subnet, and this network has it",
            )))
        }
        Found::Pool(_) => {
            return Err(bad_request(
                "floating-IP pools have no subnets to create; admins manage them through /v1",
            ))
        }
    };
    let network = state
        .store
        .create_network_with_id(
            pending.id,
            &NewNetwork {
                project,
                name: &pending.name,
                cidr,
                gateway,
                dns_zone: &state.dns_zone,
            },
        )
        .await?;
    if !name.is_empty() {
        state.store.set_subnet_name(network.id, &name).await?;
    }
    let shown = if name.is_empty() {
        &network.name
    } else {
        &name
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({"subnet": subnet(&network, shown)})),
    ))
}

/// `DELETE /v2.0/subnets/{id}`: the network gives its range back and is
/// pending again (409 while servers use it).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> NetworkResult<StatusCode> {
    find_subnet(&state, &caller, &id).await?;
    let network_id: NetworkId = parse_id("subnet", &id)?;
    state
        .store
        .demote_to_pending(caller.0.user.project, network_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_pools_skip_the_gateway() {
        let c: Cidr = "10.0.0.0/24".parse().unwrap();
        assert_eq!(
            json!(allocation_pools(c, c.first_host())),
            json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
        );
        assert_eq!(
            json!(allocation_pools(c, "10.0.0.100".parse().unwrap())),
            json!([{"start": "10.0.0.1", "end": "10.0.0.99"}, {"start": "10.0.0.101", "end": "10.0.0.254"}])
        );
    }
}
