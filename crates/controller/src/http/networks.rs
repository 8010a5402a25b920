//! Private networks.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use crate::store::networks::NewNetwork;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::networks::{CreateNetwork, Network};
use nubis_api::{ErrorBody, NetworkId};

/// Create a network. Its range must not overlap any other network.
#[utoipa::path(post, path = "/v1/networks", tag = "networks", request_body = CreateNetwork,
    responses((status = 201, body = Network), (status = 400, body = ErrorBody),
        (status = 403, description = "`quota_exceeded`: the project's quota has no room", body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateNetwork>,
) -> ApiResult<(StatusCode, Json<Network>)> {
    let gateway = req.gateway().map_err(ApiError::bad_request)?;
    let zone = req
        .dns_zone
        .as_ref()
        .map(|z| z.as_str().to_owned())
        .unwrap_or_else(|| state.dns_zone.to_string());
    let network = state
        .store
        .create_network(&NewNetwork {
            project: caller.user.project,
            name: req.name.as_str(),
            cidr: req.cidr,
            gateway,
            dns_zone: &zone,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(network)))
}

/// List the project's networks (the `default` one is made on first use).
#[utoipa::path(get, path = "/v1/networks", tag = "networks",
    responses((status = 200, body = [Network])), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Network>>> {
    state
        .store
        .ensure_default_network(caller.user.project, &state.dns_zone)
        .await?;
    Ok(Json(state.store.list_networks(caller.user.project).await?))
}

/// Show a network (by id or name).
#[utoipa::path(get, path = "/v1/networks/{id}", tag = "networks", params(("id" = String, Path)),
    responses((status = 200, body = Network), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Network>> {
    let n = state
        .store
        .network(caller.user.project, &id)
        .await
        .map_err(ApiError::from_store("network"))?;
    Ok(Json(n))
}

/// Delete a network no server uses.
#[utoipa::path(delete, path = "/v1/networks/{id}", tag = "networks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<NetworkId>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_network(caller.user.project, id)
        .await
        .map_err(ApiError::from_store("network"))?;
    Ok(StatusCode::NO_CONTENT)
}
