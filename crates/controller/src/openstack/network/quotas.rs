//! `GET /v2.0/quotas/{project}` (+ `/details`): the project's Nubis
//! quotas in Neutron's names (`quota show` reads them once a network
//! endpoint exists). Nubis limits networks (each has its one subnet),
//! floating IPs, security groups and rules; ports are limited only by
//! servers (-1); routers, RBAC policies and subnet pools do not exist (0).
//! Setting them here is 501 (admins use Nova's os-quota-sets or `/v1`).

use super::error::NetworkResult;
use super::Caller;
use crate::http::AppState;
use axum::extract::{Path, State};
use axum::Json;
use nubis_api::quotas::{QuotaLimits, MAX_LIMIT};
use serde_json::{json, Map, Value};

fn n(v: u64) -> Value {
    if v >= MAX_LIMIT {
        json!(-1)
    } else {
        json!(v)
    }
}

/// Neutron's names with limit and use.
fn items(
    limits: &QuotaLimits,
    used: &QuotaLimits,
    ports: u64,
) -> Vec<(&'static str, Value, Value)> {
    vec![
        ("network", n(limits.networks), n(used.networks)),
        ("subnet", n(limits.networks), n(used.networks)),
        ("port", json!(-1), n(ports)),
        ("floatingip", n(limits.floating_ips), n(used.floating_ips)),
        (
            "security_group",
            n(limits.security_groups),
            n(used.security_groups),
        ),
        (
            "security_group_rule",
            n(limits.security_group_rules),
            n(used.security_group_rules),
        ),
        ("router", json!(0), json!(0)),
        ("rbac_policy", json!(0), json!(0)),
        ("subnetpool", json!(0), json!(0)),
    ]
}

async fn load(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> NetworkResult<Vec<(&'static str, Value, Value)>> {
    let project = caller.0.project_in_path(state, raw).await?;
    let q = state
        .store
        .project_quotas(project)
        .await
        .map_err(crate::http::error::ApiError::from_store("project"))?;
    let ports = state.store.project_ports(project).await?.len() as u64;
    Ok(items(&q.limits, &q.in_use, ports))
}

/// `GET /v2.0/quotas/{project}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
) -> NetworkResult<Json<Value>> {
    let quota: Map<String, Value> = load(&state, &caller, &project)
        .await?
        .into_iter()
        .map(|(k, limit, _)| (k.to_owned(), limit))
        .collect();
    Ok(Json(json!({ "quota": quota })))
}

/// `GET /v2.0/quotas/{project}/details`.
pub async fn details(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
) -> NetworkResult<Json<Value>> {
    let quota: Map<String, Value> = load(&state, &caller, &project)
        .await?
        .into_iter()
        .map(|(k, limit, used)| {
            (
                k.to_owned(),
                json!({"limit": limit, "used": used, "reserved": 0}),
            )
        })
        .collect();
    Ok(Json(json!({ "quota": quota })))
}

/// `GET /v2.0/quotas/{project}/default`: what a new project gets.
pub async fn defaults(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
) -> NetworkResult<Json<Value>> {
    caller.0.project_in_path(&state, &project).await?;
    let quota: Map<String, Value> = items(&QuotaLimits::default(), &QuotaLimits::default_zero(), 0)
        .into_iter()
        .map(|(k, limit, _)| (k.to_owned(), limit))
        .collect();
    Ok(Json(json!({ "quota": quota })))
}
