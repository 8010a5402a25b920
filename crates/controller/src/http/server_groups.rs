//! Server groups: affinity or anti-affinity of their members, as Nova's
//! `nova boot --hint group=`. Project-scoped; another project's group is 404.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::server_groups::{CreateServerGroup, ServerGroup};
use nubis_api::{ErrorBody, ServerGroupId};

/// Create a server group; servers join it at create with
/// `"scheduler_hints": {"group": "<id or name>"}`.
#[utoipa::path(post, path = "/v1/server-groups", tag = "server-groups", request_body = CreateServerGroup,
    responses((status = 201, body = ServerGroup),
        (status = 403, body = ErrorBody, description = "`quota_exceeded`: the project's server-group quota is used up"),
        (status = 409, body = ErrorBody, description = "`conflict`: a group of that name exists")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateServerGroup>,
) -> ApiResult<(StatusCode, Json<ServerGroup>)> {
    let group = state
        .store
        .create_server_group(caller.user.project, req.name.as_str(), req.policy)
        .await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// List the project's server groups.
#[utoipa::path(get, path = "/v1/server-groups", tag = "server-groups",
    responses((status = 200, body = [ServerGroup])), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ServerGroup>>> {
    Ok(Json(
        state.store.list_server_groups(caller.user.project).await?,
    ))
}

/// Show a server group (by id or name) with its members.
#[utoipa::path(get, path = "/v1/server-groups/{id}", tag = "server-groups", params(("id" = String, Path)),
    responses((status = 200, body = ServerGroup), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ServerGroup>> {
    let group = state
        .store
        .server_group(caller.user.project, &id)
        .await
        .map_err(ApiError::from_store("server group"))?;
    Ok(Json(group))
}

/// Delete a server group that has no members.
#[utoipa::path(delete, path = "/v1/server-groups/{id}", tag = "server-groups", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`conflict`: the group still has members")),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerGroupId>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_server_group(caller.user.project, id)
        .await
        .map_err(ApiError::from_store("server group"))?;
    Ok(StatusCode::NO_CONTENT)
}
