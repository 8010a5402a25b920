//! Hosts (admins only): state, capacity, allocation; disable and enable.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, Caller, OptionalApiJson};
use super::AppState;
use crate::app::hosts;
use axum::extract::State;
use axum::Json;
use nubis_api::hosts::{DisableHost, HostSummary};
use nubis_api::{ErrorBody, HostId};

/// List hosts with their state, capacity and allocation (admin only).
#[utoipa::path(get, path = "/v1/hosts", tag = "hosts",
    responses((status = 200, body = [HostSummary]),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<HostSummary>>> {
    caller.require_admin()?;
    Ok(Json(hosts::list(&state.store, &state.placement).await?))
}

/// Show a host (admin only).
#[utoipa::path(get, path = "/v1/hosts/{id}", tag = "hosts", params(("id" = String, Path)),
    responses((status = 200, body = HostSummary),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<HostId>,
) -> ApiResult<Json<HostSummary>> {
    caller.require_admin()?;
    hosts::show(&state.store, &state.placement, id)
        .await
        .map(Json)
        .map_err(not_found_as_host)
}

/// Disable a host: no new servers are placed on it; those on it keep
/// running (admin only). The body, with a reason, is optional.
#[utoipa::path(post, path = "/v1/hosts/{id}/disable", tag = "hosts", params(("id" = String, Path)),
    request_body(content = Option<DisableHost>, description = "optional"),
    responses((status = 200, body = HostSummary), (status = 400, body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<HostId>,
    OptionalApiJson(req): OptionalApiJson<DisableHost>,
) -> ApiResult<Json<HostSummary>> {
    caller.require_admin()?;
    let host = hosts::set_enabled(
        &state.store,
        &state.placement,
        id,
        false,
        req.reason.as_deref(),
    )
    .await
    .map_err(not_found_as_host)?;
    tracing::info!(host = %id, reason = ?host.disabled_reason, "host disabled");
    Ok(Json(host))
}

/// Enable a host again (admin only).
#[utoipa::path(post, path = "/v1/hosts/{id}/enable", tag = "hosts", params(("id" = String, Path)),
    responses((status = 200, body = HostSummary),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<HostId>,
) -> ApiResult<Json<HostSummary>> {
    caller.require_admin()?;
    let host = hosts::set_enabled(&state.store, &state.placement, id, true, None)
        .await
        .map_err(not_found_as_host)?;
    tracing::info!(host = %id, "host enabled");
    Ok(Json(host))
}

fn not_found_as_host(e: crate::app::AppError) -> ApiError {
    match e {
        crate::app::AppError::Store(crate::store::StoreError::NotFound) => {
            ApiError::not_found("host")
        }
        other => other.into(),
    }
}
