//! `/v1/images`: the image catalog. The rules (publishing, boot parts,
//! deletion, the checked upload) live in `app::images`, shared with Glance.

use super::error::{ApiError, ApiResult};
use super::extract::{AgentCaller, ApiJson, ApiPath, Caller};
use super::AppState;
use crate::app::images;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use nubis_api::images::{CreateImage, Image};
use nubis_api::{ErrorBody, ImageId};

pub use crate::app::images::image_path;

/// Create an image record; upload its bytes with `PUT /v1/images/{id}/file`.
#[utoipa::path(post, path = "/v1/images", tag = "images", request_body = CreateImage,
    responses((status = 201, body = Image), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateImage>,
) -> ApiResult<(StatusCode, Json<Image>)> {
    let image = images::create_image(&state, &caller, &req).await?;
    Ok((StatusCode::CREATED, Json(image)))
}

/// List the images the caller's project can use.
#[utoipa::path(get, path = "/v1/images", tag = "images",
    responses((status = 200, body = [Image])), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Image>>> {
    Ok(Json(state.store.list_images(caller.user.project).await?))
}

/// Show an image.
#[utoipa::path(get, path = "/v1/images/{id}", tag = "images",
    params(("id" = String, Path, description = "image id or name")),
    responses((status = 200, body = Image), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Image>> {
    let image = state
        .store
        .image_visible(caller.user.project, &id)
        .await
        .map_err(ApiError::from_store("image"))?;
    Ok(Json(image))
}

/// Delete an image (its owner, or an admin): refused with 409 `in_use` while
/// a server still uses it (as its disk's base or its ISO, or through an image
/// that boots with it as kernel or initrd). Its file is removed at once; the
/// agents drop their cached copies when they next sweep their caches.
#[utoipa::path(delete, path = "/v1/images/{id}", tag = "images",
    params(("id" = String, Path, description = "image id or name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    images::delete_image(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ids of every image with a file (agent only): a host drops the cached
/// copies of images missing here (deleted).
#[utoipa::path(get, path = "/v1/agent/images", tag = "agent",
    responses((status = 200, body = [String]), (status = 401, body = ErrorBody)))]
pub async fn agent_catalog(
    State(state): State<AppState>,
    _agent: AgentCaller,
) -> ApiResult<Json<Vec<ImageId>>> {
    Ok(Json(state.store.active_image_ids().await?))
}

/// Upload an image's bytes (streamed to disk, never held in memory). The
/// bytes are checked against the declared format before the image is usable.
#[utoipa::path(put, path = "/v1/images/{id}/file", tag = "images",
    params(("id" = String, Path, description = "image id")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = Image), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 408, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ImageId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Image>> {
    let image =
        images::upload_file(&state, &caller, id, images::content_length(&headers), body).await?;
    Ok(Json(image))
}
