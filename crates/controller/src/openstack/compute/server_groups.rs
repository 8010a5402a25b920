//! `os-server-groups`: Nubis server groups (affinity, anti-affinity) in
//! Nova's v2.1 shape (`policies` as a one-item list). Members join at
//! create with `os:scheduler_hints: {"group": id}`.

use super::{parse_body, ComputeResult};
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::http::AppState;
use crate::openstack::auth::OsCaller;
use crate::openstack::errors::ComputeError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use nubis_api::server_groups::{GroupPolicy, ServerGroup};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    server_group: NovaGroup,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NovaGroup {
    name: String,
    policies: Vec<String>,
}

fn view(g: &ServerGroup, user_id: &str) -> Value {
    json!({
        "id": g.id.to_string(),
        "name": g.name,
        "policies": [g.policy.as_str()],
        "members": g.members.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "metadata": {},
        "project_id": g.project.to_string(),
        "user_id": user_id,
    })
}

fn bad(message: impl Into<String>) -> ComputeError {
    ComputeError(ApiError::bad_request(message))
}

/// `GET /os-server-groups`.
pub async fn list(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
) -> ComputeResult<Json<Value>> {
    let user = caller.user.id.to_string();
    let groups: Vec<Value> = state
        .store
        .list_server_groups(caller.user.project)
        .await?
        .iter()
        .map(|g| view(g, &user))
        .collect();
    Ok(Json(json!({ "server_groups": groups })))
}

/// `POST /os-server-groups`: `{"server_group": {"name", "policies": [p]}}`.
pub async fn create(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    body: Bytes,
) -> ComputeResult<Json<Value>> {
    let req: CreateRequest = parse_body(&body)?;
    let [policy] = req.server_group.policies.as_slice() else {
        return Err(bad("Invalid input for field policies: exactly one policy"));
    };
    let policy = GroupPolicy::parse(policy).ok_or_else(|| {
        bad(format!(
            "Invalid policy {policy}: Nubis offers affinity and anti-affinity"
        ))
    })?;
    let name: nubis_api::Name = req
        .server_group
        .name
        .parse()
        .map_err(|e| bad(format!("Invalid server group name: {e}")))?;
    let group = state
        .store
        .create_server_group(caller.user.project, name.as_str(), policy)
        .await?;
    Ok(Json(
        json!({ "server_group": view(&group, &caller.user.id.to_string()) }),
    ))
}

async fn by_id(state: &AppState, caller: &Caller, id: &str) -> ComputeResult<ServerGroup> {
    match state.store.server_group(caller.user.project, id).await {
        Ok(g) if g.id.to_string() == id => Ok(g),
        Ok(_) | Err(crate::store::StoreError::NotFound) => Err(ComputeError(ApiError::not_found(
            &format!("Instance group {id}"),
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `GET /os-server-groups/{id}`.
pub async fn show(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> ComputeResult<Json<Value>> {
    let group = by_id(&state, &caller, &id).await?;
    Ok(Json(
        json!({ "server_group": view(&group, &caller.user.id.to_string()) }),
    ))
}

/// `DELETE /os-server-groups/{id}`: 204 (409 while it has members).
pub async fn delete(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> ComputeResult<StatusCode> {
    let group = by_id(&state, &caller, &id).await?;
    state
        .store
        .delete_server_group(caller.user.project, group.id)
        .await
        .map_err(ApiError::from_store("server group"))?;
    Ok(StatusCode::NO_CONTENT)
}
