//! Floating IPs: pools (admin), allocation, association with a server.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use crate::store::StoreError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::floating_ips::{
    AllocateFloatingIp, CreateFloatingIpPool, FloatingIp, FloatingIpPool, UpdateFloatingIp,
};
use nubis_api::{ErrorBody, FloatingIpId};

/// Create a floating IP pool (admin only).
#[utoipa::path(post, path = "/v1/floating-ip-pools", tag = "floating-ips", request_body = CreateFloatingIpPool,
    responses((status = 201, body = FloatingIpPool), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_pool(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateFloatingIpPool>,
) -> ApiResult<(StatusCode, Json<FloatingIpPool>)> {
    caller.require_admin()?;
    req.check().map_err(ApiError::bad_request)?;
    let pool = state
        .store
        .create_floating_ip_pool(req.name.as_str(), req.first, req.last)
        .await?;
    Ok((StatusCode::CREATED, Json(pool)))
}

/// List floating IP pools.
#[utoipa::path(get, path = "/v1/floating-ip-pools", tag = "floating-ips",
    responses((status = 200, body = [FloatingIpPool])), security(("bearer" = [])))]
pub async fn list_pools(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Vec<FloatingIpPool>>> {
    Ok(Json(state.store.list_floating_ip_pools().await?))
}

/// Allocate a floating IP to the project.
#[utoipa::path(post, path = "/v1/floating-ips", tag = "floating-ips", request_body = AllocateFloatingIp,
    responses((status = 201, body = FloatingIp), (status = 400, body = ErrorBody),
        (status = 403, description = "`quota_exceeded`: the project's quota has no room", body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn allocate(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<AllocateFloatingIp>,
) -> ApiResult<(StatusCode, Json<FloatingIp>)> {
    let ip = state
        .store
        .allocate_floating_ip_at(caller.user.project, req.pool.as_deref(), state.clock.now())
        .await
        .map_err(ApiError::from_store_ref(
            "floating IP pool",
            req.pool.as_deref().unwrap_or_default(),
        ))?;
    Ok((StatusCode::CREATED, Json(ip)))
}

/// List the project's floating IPs.
#[utoipa::path(get, path = "/v1/floating-ips", tag = "floating-ips",
    responses((status = 200, body = [FloatingIp])), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<FloatingIp>>> {
    Ok(Json(
        state.store.list_floating_ips(caller.user.project).await?,
    ))
}

/// Show a floating IP.
#[utoipa::path(get, path = "/v1/floating-ips/{id}", tag = "floating-ips", params(("id" = String, Path)),
    responses((status = 200, body = FloatingIp), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<FloatingIpId>,
) -> ApiResult<Json<FloatingIp>> {
    let ip = state
        .store
        .floating_ip(caller.user.project, id)
        .await
        .map_err(ApiError::from_store("floating IP"))?;
    Ok(Json(ip))
}

/// Associate with a server (`{"server": "web"}`) or disassociate (`{"server": null}`).
#[utoipa::path(patch, path = "/v1/floating-ips/{id}", tag = "floating-ips", params(("id" = String, Path)),
    request_body = UpdateFloatingIp,
    responses((status = 200, body = FloatingIp), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<FloatingIpId>,
    ApiJson(req): ApiJson<UpdateFloatingIp>,
) -> ApiResult<Json<FloatingIp>> {
    let project = caller.user.project;
    state
        .store
        .floating_ip(project, id)
        .await
        .map_err(ApiError::from_store("floating IP"))?;
    let server = match &req.server {
        Some(reference) => Some(
            state
                .store
                .server_by_ref(project, reference)
                .await
                .map_err(ApiError::from_store_ref("server", reference))?
                .id,
        ),
        None => None,
    };
    let ip = crate::app::floating_ips::set_server(&state.store, project, id, server)
        .await
        .map_err(|e| match e {
            crate::app::AppError::Store(StoreError::NotFound) => ApiError::not_found("floating IP"),
            other => other.into(),
        })?;
    state.desired_state_changed();
    Ok(Json(ip))
}

/// Release a floating IP back to its pool.
#[utoipa::path(delete, path = "/v1/floating-ips/{id}", tag = "floating-ips", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<FloatingIpId>,
) -> ApiResult<StatusCode> {
    state
        .store
        .release_floating_ip_at(caller.user.project, id, state.clock.now())
        .await
        .map_err(ApiError::from_store("floating IP"))?;
    state.desired_state_changed();
    Ok(StatusCode::NO_CONTENT)
}
