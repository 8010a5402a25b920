//! Security groups and their rules. Every change is applied live: agents
//! get the new desired state and reload their rules.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::security_groups::{CreateRule, CreateSecurityGroup, Rule, SecurityGroup};
use nubis_api::{ErrorBody, SecurityGroupId, SecurityGroupRuleId};

/// Create a security group (with no rules: it allows nothing until given some).
#[utoipa::path(post, path = "/v1/security-groups", tag = "security-groups", request_body = CreateSecurityGroup,
    responses((status = 201, body = SecurityGroup), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the project's security-group quota is used up"),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateSecurityGroup>,
) -> ApiResult<(StatusCode, Json<SecurityGroup>)> {
    let description = req.description.unwrap_or_default();
    let group = crate::app::security_groups::create_group(
        &state.store,
        caller.user.project,
        req.name.as_str(),
        &description,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// List the project's security groups (`default` is made on first use).
#[utoipa::path(get, path = "/v1/security-groups", tag = "security-groups",
    responses((status = 200, body = [SecurityGroup])), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<SecurityGroup>>> {
    state
        .store
        .ensure_default_security_group(caller.user.project)
        .await?;
    Ok(Json(
        state
            .store
            .list_security_groups(caller.user.project)
            .await?,
    ))
}

/// Show a security group (by id or name).
#[utoipa::path(get, path = "/v1/security-groups/{id}", tag = "security-groups", params(("id" = String, Path)),
    responses((status = 200, body = SecurityGroup), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SecurityGroup>> {
    let g = state
        .store
        .security_group(caller.user.project, &id)
        .await
        .map_err(ApiError::from_store("security group"))?;
    Ok(Json(g))
}

/// Delete a security group no server uses.
#[utoipa::path(delete, path = "/v1/security-groups/{id}", tag = "security-groups", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<SecurityGroupId>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_security_group(caller.user.project, id)
        .await
        .map_err(ApiError::from_store("security group"))?;
    state.desired_state_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// Add a rule; running servers in the group get it at once.
#[utoipa::path(post, path = "/v1/security-groups/{id}/rules", tag = "security-groups", params(("id" = String, Path)),
    request_body = CreateRule,
    responses((status = 201, body = Rule), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the project's security-group rule quota is used up"),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_rule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<SecurityGroupId>,
    ApiJson(req): ApiJson<CreateRule>,
) -> ApiResult<(StatusCode, Json<Rule>)> {
    let project = caller.user.project;
    let group = state
        .store
        .security_group(project, &id.to_string())
        .await
        .map_err(ApiError::from_store("security group"))?;
    let rule =
        crate::app::security_groups::add_rule(&state.store, project, &group.id.to_string(), &req)
            .await?;
    state.desired_state_changed();
    Ok((StatusCode::CREATED, Json(rule)))
}

/// Delete a rule; running servers in the group lose it at once.
#[utoipa::path(delete, path = "/v1/security-groups/{id}/rules/{rule}", tag = "security-groups",
    params(("id" = String, Path), ("rule" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_rule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, rule)): ApiPath<(SecurityGroupId, SecurityGroupRuleId)>,
) -> ApiResult<StatusCode> {
    state
        .store
        .security_group(caller.user.project, &id.to_string())
        .await
        .map_err(ApiError::from_store("security group"))?;
    state
        .store
        .delete_rule(id, rule)
        .await
        .map_err(ApiError::from_store("rule"))?;
    state.desired_state_changed();
    Ok(StatusCode::NO_CONTENT)
}
