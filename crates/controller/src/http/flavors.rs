//! Flavors.

use super::error::ApiResult;
use super::extract::{ApiJson, Caller};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::flavors::{CreateFlavor, Flavor};
use nubis_api::ErrorBody;

/// List flavors.
#[utoipa::path(get, path = "/v1/flavors", tag = "flavors",
    responses((status = 200, body = [Flavor])), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Vec<Flavor>>> {
    Ok(Json(state.store.list_flavors().await?))
}

/// Create a flavor (admin only).
#[utoipa::path(post, path = "/v1/flavors", tag = "flavors", request_body = CreateFlavor,
    responses((status = 201, body = Flavor), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateFlavor>,
) -> ApiResult<(StatusCode, Json<Flavor>)> {
    caller.require_admin()?;
    let flavor = state.store.create_flavor(&req).await?;
    Ok((StatusCode::CREATED, Json(flavor)))
}
