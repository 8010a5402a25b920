//! Project quotas: every user sees their project's, admins see and set any.
//!
//! A create that does not fit answers 403 `quota_exceeded` (as Nova does),
//! with a message naming the resource, its limit and what is in use.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Caller};
use super::AppState;
use axum::extract::{Path, State};
use axum::Json;
use nubis_api::quotas::{ProjectQuotas, UpdateQuotas};
use nubis_api::ErrorBody;

/// Show a project's quota limits and what it holds now. Users see their own
/// project's (`{id}` may be `current`; another project answers 404); admins see any.
#[utoipa::path(get, path = "/v1/projects/{id}/quotas", tag = "quotas", params(("id" = String, Path)),
    responses((status = 200, body = ProjectQuotas), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<ProjectQuotas>> {
    let project = caller.project_in_path(&state, &project).await?;
    let quotas = state
        .store
        .project_quotas(project)
        .await
        .map_err(ApiError::from_store("project"))?;
    Ok(Json(quotas))
}

/// Set a project's quota limits (admin only). Limits left out stay as they
/// are; each must be between 0 and 2^40. A limit below what the project
/// already holds is refused with 409, and nothing changes.
#[utoipa::path(put, path = "/v1/projects/{id}/quotas", tag = "quotas", params(("id" = String, Path)),
    request_body = UpdateQuotas,
    responses((status = 200, body = ProjectQuotas), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<UpdateQuotas>,
) -> ApiResult<Json<ProjectQuotas>> {
    caller.require_admin()?;
    let project = caller.project_in_path(&state, &project).await?;
    let quotas = state
        .store
        .set_quotas(project, &req)
        .await
        .map_err(ApiError::from_store("project"))?;
    tracing::info!(%project, limits = ?quotas.limits, "quotas set");
    Ok(Json(quotas))
}
