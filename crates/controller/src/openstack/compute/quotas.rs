//! `GET /limits` and `os-quota-sets`: the project's Nubis quotas and usage
//! (`store::project_quotas`, as `/v1/projects/{id}/quotas`) in Nova's
//! names. What Nubis does not limit is -1 (unlimited, as Nova writes it);
//! what it does not have at all (server metadata, injected files) is 0.

use super::ComputeResult;
use crate::http::AppState;
use crate::openstack::auth::OsCaller;
use crate::openstack::errors::ComputeError;
use axum::extract::{Path, Query, State};
use axum::Json;
use nubis_api::quotas::QuotaLimits;
use nubis_api::ProjectId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Not limited by Nubis.
const UNLIMITED: i64 = -1;

fn n(v: u64) -> Value {
    json!(v)
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

/// `PUT`/`DELETE /os-quota-sets/{project_id}`: not served yet (admins
/// set quotas with `/v1/projects/{id}/quotas`).
pub async fn not_implemented() -> ComputeError {
    ComputeError(crate::openstack::errors::not_implemented(
        "changing quotas through os-quota-sets (admins: PUT /v1/projects/{id}/quotas)",
    ))
}
