//! `GET /limits` and `os-quota-sets`: the project's Nubis quotas and usage
//! (`store::project_quotas`, as `/v1/projects/{id}/quotas`) in Nova's
//! names. What Nubis does not limit is -1 (unlimited, as Nova writes it),
//! and so is a limit at Nubis's maximum (2^40); what it does not have at
//! all (server metadata, injected files) is 0. Admins set limits with
//! `PUT /os-quota-sets/{project_id}` (`store::set_quotas`, as `/v1`).

use super::ComputeResult;
use crate::http::AppState;
use crate::openstack::auth::OsCaller;
use crate::openstack::errors::ComputeError;
use axum::extract::{Path, Query, State};
use axum::Json;
use nubis_api::quotas::{QuotaLimits, UpdateQuotas, MAX_LIMIT};
use nubis_api::ProjectId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Not limited by Nubis.
const UNLIMITED: i64 = -1;

/// A Nubis limit or count as Nova writes it: the maximum is unlimited.
fn n(v: u64) -> Value {
    if v >= MAX_LIMIT {
        json!(UNLIMITED)
    } else {
        json!(v)
    }
}

/// Nova's quota names (microversion 2.1) with their limits and usage.
fn quota_items(
    limits: &QuotaLimits,
    used: &QuotaLimits,
    keypairs: u64,
) -> Vec<(&'static str, Value, Value)> {
    vec![
        ("instances", n(limits.servers), n(used.servers)),
        ("cores", n(limits.vcpus), n(used.vcpus)),
        ("ram", n(limits.memory_mib), n(used.memory_mib)),
        ("key_pairs", json!(UNLIMITED), n(keypairs)),
        ("floating_ips", n(limits.floating_ips), n(used.floating_ips)),
        ("fixed_ips", json!(UNLIMITED), json!(0)),
        (
            "security_groups",
            n(limits.security_groups),
            n(used.security_groups),
        ),
        (
            "security_group_rules",
            n(limits.security_group_rules),
            n(used.security_group_rules),
        ),
        (
            "server_groups",
            n(limits.server_groups),
            n(used.server_groups),
        ),
        ("server_group_members", json!(UNLIMITED), json!(0)),
        ("metadata_items", json!(0), json!(0)),
        ("injected_files", json!(0), json!(0)),
        ("injected_file_content_bytes", json!(0), json!(0)),
        ("injected_file_path_bytes", json!(0), json!(0)),
    ]
}

/// The project a path or `tenant_id` names, as `/v1`'s rule: the caller's
/// own, or any existing one for admins; anything else is not found.
async fn project(state: &AppState, caller: &OsCaller, raw: &str) -> ComputeResult<ProjectId> {
    Ok(caller.0.project_in_path(state, raw).await?)
}

async fn usage(
    state: &AppState,
    project: ProjectId,
) -> ComputeResult<(QuotaLimits, QuotaLimits, u64)> {
    let q = state
        .store
        .project_quotas(project)
        .await
        .map_err(crate::http::error::ApiError::from_store("project"))?;
    let keypairs = state.store.list_keypairs(project).await?.len() as u64;
    Ok((q.limits, q.in_use, keypairs))
}

/// `?tenant_id=` of `/limits` (admins: another project's).
#[derive(Deserialize, Default)]
pub struct LimitsQuery {
    #[serde(default)]
    tenant_id: Option<String>,
}

/// `GET /limits`: absolute limits and usage; no rate limits.
pub async fn limits(
    State(state): State<AppState>,
    caller: OsCaller,
    Query(q): Query<LimitsQuery>,
) -> ComputeResult<Json<Value>> {
    let project = match &q.tenant_id {
        Some(raw) => project(&state, &caller, raw).await?,
        None => caller.0.user.project,
    };
    let (l, u, _) = usage(&state, project).await?;
    Ok(Json(json!({"limits": {"rate": [], "absolute": {
        "maxTotalInstances": l.servers,
        "maxTotalCores": l.vcpus,
        "maxTotalRAMSize": l.memory_mib,
        "maxTotalKeypairs": UNLIMITED,
        "maxTotalFloatingIps": l.floating_ips,
        "maxSecurityGroups": l.security_groups,
        "maxSecurityGroupRules": l.security_group_rules,
        "maxServerGroups": l.server_groups,
        "maxServerGroupMembers": UNLIMITED,
        "maxServerMeta": 0,
        "maxImageMeta": 0,
        "maxPersonality": 0,
        "maxPersonalitySize": 0,
        "totalInstancesUsed": u.servers,
        "totalCoresUsed": u.vcpus,
        "totalRAMUsed": u.memory_mib,
        "totalFloatingIpsUsed": u.floating_ips,
        "totalSecurityGroupsUsed": u.security_groups,
        "totalServerGroupsUsed": u.server_groups,
    }}})))
}

/// `GET /os-quota-sets/{project_id}`: the limits.
pub async fn show(
    State(state): State<AppState>,
    caller: OsCaller,
    Path(raw): Path<String>,
) -> ComputeResult<Json<Value>> {
    let project = project(&state, &caller, &raw).await?;
    let (l, u, k) = usage(&state, project).await?;
    let mut set = Map::new();
    set.insert("id".into(), json!(project.to_string()));
    for (name, limit, _) in quota_items(&l, &u, k) {
        set.insert(name.into(), limit);
    }
    Ok(Json(json!({ "quota_set": set })))
}

/// `GET /os-quota-sets/{project_id}/detail`: limit, in use and reserved.
pub async fn detail(
    State(state): State<AppState>,
    caller: OsCaller,
    Path(raw): Path<String>,
) -> ComputeResult<Json<Value>> {
    let project = project(&state, &caller, &raw).await?;
    let (l, u, k) = usage(&state, project).await?;
    let mut set = Map::new();
    set.insert("id".into(), json!(project.to_string()));
    for (name, limit, in_use) in quota_items(&l, &u, k) {
        set.insert(
            name.into(),
            json!({"limit": limit, "in_use": in_use, "reserved": 0}),
        );
    }
    Ok(Json(json!({ "quota_set": set })))
}

/// `GET /os-quota-sets/{project_id}/defaults`: what a new project gets.
pub async fn defaults(
    State(state): State<AppState>,
    caller: OsCaller,
    Path(raw): Path<String>,
) -> ComputeResult<Json<Value>> {
    let project = project(&state, &caller, &raw).await?;
    let d = QuotaLimits::default();
    let zero = QuotaLimits::default_zero();
    let mut set = Map::new();
    set.insert("id".into(), json!(project.to_string()));
    for (name, limit, _) in quota_items(&d, &zero, 0) {
        set.insert(name.into(), limit);
    }
    Ok(Json(json!({ "quota_set": set })))
}

/// `DELETE /os-quota-sets/{project_id}` (back to the defaults): not
/// served yet.
pub async fn not_implemented() -> ComputeError {
    ComputeError(crate::openstack::errors::not_implemented(
        "resetting quotas through os-quota-sets (admins: PUT /v1/projects/{id}/quotas)",
    ))
}

/// The Nubis quota a Nova name sets, if Nubis has it.
fn nubis_name(nova: &str) -> Option<&'static str> {
    Some(match nova {
        "instances" => "servers",
        "cores" => "vcpus",
        "ram" => "memory_mib",
        "floating_ips" => "floating_ips",
        "security_groups" => "security_groups",
        "security_group_rules" => "security_group_rules",
        "server_groups" => "server_groups",
        _ => return None,
    })
}

/// Nova's `{"quota_set": {...}}` as Nubis's update: -1 is the maximum;
/// a quota Nubis does not have is refused unless it asks for what Nubis
/// does anyway (-1 where it does not limit).
fn to_update(set: &serde_json::Map<String, Value>) -> Result<UpdateQuotas, String> {
    let mut update = Map::new();
    let zero = QuotaLimits::default_zero();
    let shown: Vec<(&str, Value, Value)> = quota_items(&zero, &zero, 0);
    for (key, value) in set {
        if key == "force" || key == "id" {
            continue; // Nova's "set even below usage" and the echo of the id.
        }
        let Some(v) = value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        else {
            return Err(format!("quota {key} must be an integer, got {value}"));
        };
        match nubis_name(key) {
            Some(name) => {
                let v = if v == UNLIMITED { MAX_LIMIT as i64 } else { v };
                update.insert(name.to_owned(), json!(v));
            }
            None => {
                let fixed = shown.iter().find(|(n, _, _)| *n == key.as_str());
                match fixed {
                    Some((_, limit, _)) if limit.as_i64() == Some(v) => {}
                    Some((_, limit, _)) => {
                        return Err(format!("Nubis does not change {key}: it is always {limit}"))
                    }
                    None => return Err(format!("unknown quota {key}")),
                }
            }
        }
    }
    serde_json::from_value(Value::Object(update)).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct UpdateRequest {
    quota_set: serde_json::Map<String, Value>,
}

/// `PUT /os-quota-sets/{project_id}` (admins): sets the limits named, as
/// `PUT /v1/projects/{id}/quotas` does; a limit below what the project
/// holds is 400 (as Nova) and changes nothing.
pub async fn update(
    State(state): State<AppState>,
    caller: OsCaller,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> ComputeResult<Json<Value>> {
    use crate::http::error::ApiError;
    if !caller.0.user.admin {
        return Err(ComputeError(ApiError::forbidden(
            "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed.",
        )));
    }
    let project = project(&state, &caller, &raw).await?;
    let req: UpdateRequest = super::parse_body(&body)?;
    let update = to_update(&req.quota_set).map_err(|m| ComputeError(ApiError::bad_request(m)))?;
    let quotas = state
        .store
        .set_quotas(project, &update)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(m) => ApiError::bad_request(m),
            other => ApiError::from_store("project")(other),
        })?;
    tracing::info!(%project, limits = ?quotas.limits, "quotas set through os-quota-sets");
    let keypairs = state.store.list_keypairs(project).await?.len() as u64;
    let mut set = Map::new();
    for (name, limit, _) in quota_items(&quotas.limits, &quotas.in_use, keypairs) {
        set.insert(name.into(), limit);
    }
    Ok(Json(json!({ "quota_set": set })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(v: Value) -> Result<UpdateQuotas, String> {
        to_update(v.as_object().unwrap())
    }

    #[test]
    fn nova_quota_names_map_to_nubis_ones() {
        let u = update(json!({"instances": 5, "cores": "8", "ram": -1, "force": true})).unwrap();
        assert_eq!(u.servers, Some(5));
        assert_eq!(u.vcpus, Some(8));
        assert_eq!(u.memory_mib, Some(MAX_LIMIT));
        assert!(u.floating_ips.is_none());
        // What Nubis does anyway is accepted; anything else is refused.
        assert!(update(json!({"key_pairs": -1, "injected_files": 0})).is_ok());
        assert!(update(json!({"key_pairs": 100})).is_err());
        assert!(update(json!({"instances": "many"})).is_err());
        assert!(update(json!({"instances": -5})).is_err());
        assert!(update(json!({"bogus": 1})).is_err());
        assert_eq!(n(MAX_LIMIT), json!(-1));
    }
}
