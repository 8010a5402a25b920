//! A server's rental terms over the API: changing bandwidth and traffic
//! quota, renewing or exempting a lease, traffic usage and events.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::servers::{find, present_one};
use super::AppState;
use crate::store::terms::TermsUpdate;
use crate::store::ServerRecord;
use axum::extract::{Path, Query, State};
use axum::Json;
use nubis_api::events::ServerEvent;
use nubis_api::leases::RenewLease;
use nubis_api::servers::{Server, UpdateServer};
use nubis_api::traffic::{Period, ProjectUsage, ServerUsage};
use nubis_api::{ErrorBody, ServerId};
use std::collections::HashMap;

/// The period of `?period=YYYY-MM`, default the current month.
fn period(state: &AppState, query: &HashMap<String, String>) -> ApiResult<Period> {
    Period::requested(query.get("period").map(String::as_str), state.clock.now())
        .map_err(ApiError::bad_request)
}

/// A server the caller may manage: their own, or any for admins.
pub(super) async fn manageable(
    state: &AppState,
    caller: &Caller,
    id: ServerId,
) -> ApiResult<ServerRecord> {
    if caller.user.admin {
        state
            .store
            .server_anywhere(id)
            .await
            .map_err(ApiError::from_store("server"))
    } else {
        find(state, caller, id).await
    }
}

/// Change a server's bandwidth and/or traffic quota; applied to the running
/// server at once.
#[utoipa::path(patch, path = "/v1/servers/{id}", tag = "servers", request_body = UpdateServer,
    params(("id" = String, Path)),
    responses((status = 200, body = Server), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
    ApiJson(req): ApiJson<UpdateServer>,
) -> ApiResult<Json<Server>> {
    let current = find(&state, &caller, id).await?;
    if current.deleting {
        return Err(ApiError::conflict("the server is being deleted"));
    }
    if req.bandwidth.is_none() && req.traffic_quota.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give bandwidth and/or traffic_quota",
        ));
    }
    let update = TermsUpdate {
        bandwidth: req.bandwidth,
        traffic_quota: req.traffic_quota,
    };
    state
        .store
        .update_terms(id, &update, state.clock.now())
        .await
        .map_err(ApiError::from_store("server"))?;
    state.desired_state_changed();
    let record = find(&state, &caller, id).await?;
    Ok(Json(present_one(&state, record).await?))
}

/// Renew a server's lease (`{"term": {"duration_seconds": N}}` or
/// `{"term": {"expires_at": T}}`); admins may also set `exempt`.
#[utoipa::path(post, path = "/v1/servers/{id}/lease", tag = "servers", request_body = RenewLease,
    params(("id" = String, Path)),
    responses((status = 200, body = Server), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn renew_lease(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
    ApiJson(req): ApiJson<RenewLease>,
) -> ApiResult<Json<Server>> {
    let current = manageable(&state, &caller, id).await?;
    if current.deleting {
        return Err(ApiError::conflict("the server is being deleted"));
    }
    if req.exempt.is_some() {
        caller.require_admin()?;
    }
    let now = state.clock.now();
    let expiry = match req.term {
        Some(term) => Some(term.expiry(now).map_err(ApiError::bad_request)?),
        None if req.exempt.is_none() => {
            return Err(ApiError::bad_request(
                "nothing to change: give term and/or exempt",
            ))
        }
        None => None,
    };
    if let Some(exempt) = req.exempt {
        state
            .store
            .set_lease_exempt(id, exempt, now)
            .await
            .map_err(ApiError::from_store("server"))?;
    }
    if let Some(expiry) = expiry {
        state
            .store
            .renew_lease(id, expiry, now)
            .await
            .map_err(ApiError::from_store("server"))?;
    }
    let record = manageable(&state, &caller, id).await?;
    Ok(Json(present_one(&state, record).await?))
}

/// A server's traffic in a billing period (`?period=YYYY-MM`, default this
/// month): totals, quota state and an hourly series.
#[utoipa::path(get, path = "/v1/servers/{id}/usage", tag = "usage",
    params(("id" = String, Path), ("period" = Option<String>, Query)),
    responses((status = 200, body = ServerUsage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn server_usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<ServerUsage>> {
    let period = period(&state, &query)?;
    let usage = state
        .store
        .server_usage(caller.user.project, id, period)
        .await
        .map_err(ApiError::from_store("server"))?;
    Ok(Json(usage))
}

/// A project's traffic in a billing period, per server and hourly.
/// `{id}` is the project id or `current`.
#[utoipa::path(get, path = "/v1/projects/{id}/usage", tag = "usage",
    params(("id" = String, Path), ("period" = Option<String>, Query)),
    responses((status = 200, body = ProjectUsage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn project_usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<ProjectUsage>> {
    let project = caller.project_in_path(&state, &project).await?;
    let period = period(&state, &query)?;
    Ok(Json(state.store.project_usage(project, period).await?))
}

/// What happened to a server and why (quota, lease), oldest first.
#[utoipa::path(get, path = "/v1/servers/{id}/events", tag = "servers",
    params(("id" = String, Path)),
    responses((status = 200, body = [ServerEvent]), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn server_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<Json<Vec<ServerEvent>>> {
    let events = state.store.events(caller.user.project, Some(id)).await?;
    if events.is_empty() {
        // Tell "no events yet" from "no such server".
        find(&state, &caller, id).await?;
    }
    Ok(Json(events))
}

/// Events of the caller's project, deleted servers included, oldest first.
#[utoipa::path(get, path = "/v1/events", tag = "servers",
    responses((status = 200, body = [ServerEvent])),
    security(("bearer" = [])))]
pub async fn project_events(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ServerEvent>>> {
    Ok(Json(state.store.events(caller.user.project, None).await?))
}
