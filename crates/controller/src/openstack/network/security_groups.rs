//! `/v2.0/security-groups` and `/v2.0/security-group-rules` over Nubis's
//! security groups, through the same domain rules as `/v1`
//! (`app::security_groups`). Nubis rules are IPv4 allow rules; a rule
//! without a remote admits any address, as Neutron's.

use super::body::{own_project, string, Body};
use super::error::{bad_request, not_found, NetworkResult};
use super::{parse_id, query, standard, Caller};
use crate::app::security_groups::{add_rule, create_group};
use crate::http::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use nubis_api::security_groups::{CreateRule, Direction, Prefix, Protocol, Rule, SecurityGroup};
use nubis_api::{Name, ProjectId, SecurityGroupId, SecurityGroupRuleId};
use serde_json::{json, Map, Value};

/// A rule in Neutron's form.
fn rule(r: &Rule, group: &SecurityGroup) -> Value {
    let mut m = standard(&group.project, group.created_at);
    let protocol = match r.protocol {
        Protocol::Any => Value::Null,
        p => json!(p.as_str()),
    };
    let direction = match r.direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    for (k, v) in [
        ("id", json!(r.id.to_string())),
        ("security_group_id", json!(group.id.to_string())),
        ("direction", json!(direction)),
        ("ethertype", json!("IPv4")),
        ("protocol", protocol),
        ("port_range_min", json!(r.port_min)),
        ("port_range_max", json!(r.port_max)),
        (
            "remote_ip_prefix",
            json!(r.remote_cidr.map(|c| c.to_string())),
        ),
        (
            "normalized_cidr",
            json!(r.remote_cidr.map(|c| c.to_string())),
        ),
        (
            "remote_group_id",
            json!(r.remote_group.map(|g| g.to_string())),
        ),
        ("remote_address_group_id", Value::Null),
        ("belongs_to_default_sg", json!(group.name == "default")),
    ] {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// A group in Neutron's form, with its rules.
fn group(g: &SecurityGroup) -> Value {
    let mut m = standard(&g.project, g.created_at);
    for (k, v) in [
        ("id", json!(g.id.to_string())),
        ("name", json!(g.name)),
        ("description", json!(g.description)),
        ("stateful", json!(true)),
        ("shared", json!(false)),
        (
            "security_group_rules",
            Value::Array(g.rules.iter().map(|r| rule(r, g)).collect()),
        ),
    ] {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

async fn groups(state: &AppState, project: ProjectId) -> NetworkResult<Vec<SecurityGroup>> {
    state.store.ensure_default_security_group(project).await?;
    Ok(state.store.list_security_groups(project).await?)
}

/// `GET /v2.0/security-groups` (`default` is made on first use, as on `/v1`).
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> NetworkResult<Json<Value>> {
    let all = groups(&state, caller.user.project)
        .await?
        .iter()
        .map(group)
        .collect();
    Ok(Json(
        json!({"security_groups": query::filter(all, &params)}),
    ))
}

/// The group `id` of `project`.
async fn find(state: &AppState, project: ProjectId, id: &str) -> NetworkResult<SecurityGroup> {
    let gid: SecurityGroupId = parse_id("security_group", id)?;
    groups(state, project)
        .await?
        .into_iter()
        .find(|g| g.id == gid)
        .ok_or_else(|| not_found("security_group", id))
}

/// `GET /v2.0/security-groups/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> NetworkResult<Json<Value>> {
    let g = find(&state, caller.user.project, &id).await?;
    Ok(Json(json!({"security_group": group(&g)})))
}

/// `POST /v2.0/security-groups`: a group with no rules (Nubis's groups
/// admit nothing until given rules; Neutron adds two egress rules, Nubis
/// does not filter egress by default).
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Body,
) -> NetworkResult<(StatusCode, Json<Value>)> {
    let project = caller.user.project;
    let m = body.resource(
        "security_group",
        &["name", "description", "project_id", "tenant_id", "stateful"],
    )?;
    own_project(&m, &project.to_string())?;
    super::body::only(&m, "stateful", &json!(true), "Nubis groups are stateful")?;
    let name: Name = string(&m, "name")?
        .ok_or_else(|| bad_request("a security group needs a name"))?
        .parse()
        .map_err(|e| bad_request(format!("Invalid input for name: {e}")))?;
    let description = string(&m, "description")?.unwrap_or_default();
    let g = create_group(&state.store, project, name.as_str(), description).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"security_group": group(&g)})),
    ))
}

/// `DELETE /v2.0/security-groups/{id}` (409 while servers use it).
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> NetworkResult<StatusCode> {
    let project = caller.user.project;
    let g = find(&state, project, &id).await?;
    state.store.delete_security_group(project, g.id).await?;
    state.desired_state_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v2.0/security-group-rules`.
pub async fn list_rules(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> NetworkResult<Json<Value>> {
    let all = groups(&state, caller.user.project)
        .await?
        .iter()
        .flat_map(|g| g.rules.iter().map(move |r| rule(r, g)))
        .collect();
    Ok(Json(
        json!({"security_group_rules": query::filter(all, &params)}),
    ))
}

/// The rule `id` of `project` and its group.
async fn find_rule(
    state: &AppState,
    project: ProjectId,
    id: &str,
) -> NetworkResult<(SecurityGroup, Rule)> {
    let rid: SecurityGroupRuleId = parse_id("security_group_rule", id)?;
    groups(state, project)
        .await?
        .into_iter()
        .find_map(|g| {
            let r = g.rules.iter().find(|r| r.id == rid).cloned()?;
            Some((g, r))
        })
        .ok_or_else(|| not_found("security_group_rule", id))
}

/// `GET /v2.0/security-group-rules/{id}`.
pub async fn show_rule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> NetworkResult<Json<Value>> {
    let (g, r) = find_rule(&state, caller.user.project, &id).await?;
    Ok(Json(json!({"security_group_rule": rule(&r, &g)})))
}

/// Neutron's protocol (a name, a number, or null/`any`) as Nubis's.
fn protocol(m: &Map<String, Value>) -> NetworkResult<Protocol> {
    let name = match m.get("protocol") {
        None | Some(Value::Null) => return Ok(Protocol::Any),
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(bad_request(format!("Invalid protocol {other}"))),
    };
    match name.as_str() {
        "any" | "0" => Ok(Protocol::Any),
        "tcp" | "6" => Ok(Protocol::Tcp),
        "udp" | "17" => Ok(Protocol::Udp),
        "icmp" | "1" => Ok(Protocol::Icmp),
        other => Err(bad_request(format!(
            "Security group rule protocol {other} not supported: Nubis rules are tcp, udp, icmp or any"
        ))),
    }
}

/// A port bound (absent or null: none; 1-65535 else 400).
fn port(m: &Map<String, Value>, key: &str) -> NetworkResult<Option<u16>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .map(Some)
            .ok_or_else(|| bad_request(format!("Invalid value for {key}: {v}"))),
    }
}

/// `POST /v2.0/security-group-rules`: IPv4 only; the same checks as
/// `/v1` (ports suit the protocol; a CIDR or a group as remote, not both).
pub async fn create_rule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Body,
) -> NetworkResult<(StatusCode, Json<Value>)> {
    let project = caller.user.project;
    let m = body.resource(
        "security_group_rule",
        &[
            "security_group_id",
            "direction",
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
            "remote_address_group_id",
            "description",
            "project_id",
            "tenant_id",
        ],
    )?;
    own_project(&m, &project.to_string())?;
    super::body::only(
        &m,
        "remote_address_group_id",
        &Value::Null,
        "Nubis has no address groups",
    )?;
    if string(&m, "description")?.is_some_and(|d| !d.is_empty()) {
        return Err(bad_request("Nubis rules have no description; leave it out"));
    }
    match string(&m, "ethertype")? {
        None | Some("IPv4") => {}
        Some(other) => {
            return Err(bad_request(format!(
                "ethertype {other} is not supported: Nubis networks are IPv4"
            )))
        }
    }
    let direction = match string(&m, "direction")? {
        Some("ingress") => Direction::Ingress,
        Some("egress") => Direction::Egress,
        other => {
            return Err(bad_request(format!(
                "Invalid input for direction: {other:?} is not ingress or egress"
            )))
        }
    };
    let group_id = string(&m, "security_group_id")?
        .ok_or_else(|| bad_request("Invalid input: security_group_id is required"))?;
    let g = find(&state, project, group_id).await?;
    let remote_cidr: Option<Prefix> = string(&m, "remote_ip_prefix")?
        .map(|p| {
            p.parse()
                .map_err(|e| bad_request(format!("Invalid input for remote_ip_prefix: {e}")))
        })
        .transpose()?;
    let remote_group = match string(&m, "remote_group_id")? {
        Some(r) => Some(
            find(&state, project, r)
                .await
                .map_err(|_| {
                    bad_request(format!(
                        "Invalid input for remote_group_id: security group {r} not found"
                    ))
                })?
                .id
                .to_string(),
        ),
        None => None,
    };
    let req = CreateRule {
        direction,
        protocol: protocol(&m)?,
        port_min: port(&m, "port_range_min")?,
        port_max: port(&m, "port_range_max")?,
        remote_cidr,
        remote_group,
    };
    let r = add_rule(&state.store, project, &g.id.to_string(), &req).await?;
    state.desired_state_changed();
    Ok((
        StatusCode::CREATED,
        Json(json!({"security_group_rule": rule(&r, &g)})),
    ))
}

/// `DELETE /v2.0/security-group-rules/{id}`.
pub async fn delete_rule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> NetworkResult<StatusCode> {
    let (g, r) = find_rule(&state, caller.user.project, &id).await?;
    state.store.delete_rule(g.id, r.id).await?;
    state.desired_state_changed();
    Ok(StatusCode::NO_CONTENT)
}
