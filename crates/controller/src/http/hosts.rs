//! Hosts (admins only): state, capacity, allocation; disable, enable and
//! drain.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, Caller, OptionalApiJson};
use super::AppState;
use crate::app::{drain, hosts};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::hosts::{DisableHost, HostSummary};
use nubis_api::migrations::{Drain, DrainHost};
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

/// Drain a host (admin only): disable it (reason `draining` unless given)
/// and move every server off it, running ones live and stopped ones cold,
/// to hosts the scheduler picks. Says per server what was started, what
/// was already moving and what stays (and why). Draining again starts
/// moves only for servers not moving yet. A down host cannot be drained:
/// evacuate it.
#[utoipa::path(post, path = "/v1/hosts/{id}/drain", tag = "hosts", params(("id" = String, Path)),
    request_body(content = Option<DrainHost>, description = "optional"),
    responses((status = 202, body = Drain), (status = 400, body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`conflict`: the host is down (evacuate it)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn drain(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<HostId>,
    OptionalApiJson(req): OptionalApiJson<DrainHost>,
) -> ApiResult<(StatusCode, Json<Drain>)> {
    caller.require_admin()?;
    let done = drain::drain(
        &state.store,
        &state.placement,
        id,
        req.reason.as_deref(),
        chrono::Utc::now(),
    )
    .await
    .map_err(|e| match e {
        crate::app::moves::MoveError::Store(crate::store::StoreError::NotFound) => {
            ApiError::not_found("host")
        }
        e => super::moves::move_error(e),
    })?;
    super::moves::wake_concerned(&state, &done.started.iter().collect::<Vec<_>>()).await;
    tracing::info!(host = %id, started = done.started.len(), moving = done.moving.len(),
        skipped = done.skipped.len(), "host drained");
    Ok((StatusCode::ACCEPTED, Json(done)))
}

fn not_found_as_host(e: crate::app::AppError) -> ApiError {
    match e {
        crate::app::AppError::Store(crate::store::StoreError::NotFound) => {
            ApiError::not_found("host")
        }
        other => other.into(),
    }
}
