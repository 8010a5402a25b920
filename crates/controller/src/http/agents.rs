//! The agent protocol, controller side: hosts register, long-poll for the
//! desired state of their instances, report what they observe, and fetch
//! image files.

use super::error::{ApiError, ApiResult};
use super::extract::{AgentCaller, ApiJson, ApiPath, Caller};
use super::images::image_path;
use super::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use nubis_api::agent::{DesiredState, Host, HostReport, ImageRef, InstanceSpec, RegisterHost};
use nubis_api::images::{Image, ImageStatus};
use nubis_api::{ErrorBody, HostId, ImageId};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// How long a desired-state long-poll waits for a change before answering anyway.
const LONG_POLL: Duration = Duration::from_secs(25);

/// Register a host (agent only; idempotent by name).
#[utoipa::path(post, path = "/v1/agent/hosts", tag = "agent", request_body = RegisterHost,
    responses((status = 200, body = Host), (status = 401, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    _agent: AgentCaller,
    ApiJson(req): ApiJson<RegisterHost>,
) -> ApiResult<Json<Host>> {
    let host = state.store.register_host(&req).await?;
    tracing::info!(host = %host.name, id = %host.id, url = %host.url, "host registered");
    Ok(Json(host))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DesiredQuery {
    /// The revision the agent already has: wait until it changes.
    after: Option<u64>,
}

/// The desired state of a host's instances (agent only). With `after`, waits
/// (up to 25 s) until desired state changes.
#[utoipa::path(get, path = "/v1/agent/hosts/{id}/desired", tag = "agent",
    params(("id" = String, Path), DesiredQuery),
    responses((status = 200, body = DesiredState), (status = 401, body = ErrorBody)))]
pub async fn desired(
    State(state): State<AppState>,
    _agent: AgentCaller,
    ApiPath(host): ApiPath<HostId>,
    Query(q): Query<DesiredQuery>,
) -> ApiResult<Json<DesiredState>> {
    let mut rx = state.revision.subscribe();
    if let Some(after) = q.after {
        if *rx.borrow_and_update() == after {
            let _ = tokio::time::timeout(LONG_POLL, rx.changed()).await;
        }
    }
    // Read the revision before the state: a change racing with this read
    // bumps the revision again, so the agent never misses it.
    let revision = *rx.borrow();
    state
        .store
        .touch_host(host)
        .await
        .map_err(ApiError::from_store("host"))?;
    let mut images: HashMap<ImageId, Image> = HashMap::new();
    let mut instances = Vec::new();
    for server in state.store.servers_on_host(host).await? {
        if server.deleting {
            continue;
        }
        let disk_image = image_ref(&state, &mut images, server.image).await?;
        let image = images[&server.image].clone();
        let kernel = match image.kernel {
            Some(id) => Some(image_ref(&state, &mut images, id).await?),
            None => None,
        };
        let initrd = match image.initrd {
            Some(id) => Some(image_ref(&state, &mut images, id).await?),
            None => None,
        };
        instances.push(InstanceSpec {
            id: server.id,
            name: server.name.clone(),
            vcpus: server.vcpus,
            memory_mib: server.memory_mib,
            disk_gib: server.disk_gib,
            disk_image,
            kernel,
            initrd,
            cmdline: image.cmdline.clone(),
            power: server.power,
            reboot_generation: server.reboot_generation,
        });
    }
    Ok(Json(DesiredState {
        revision,
        instances,
    }))
}

async fn image_ref(
    state: &AppState,
    cache: &mut HashMap<ImageId, Image>,
    id: ImageId,
) -> ApiResult<ImageRef> {
    let image = match cache.entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(state.store.image_any_project(id).await?)
        }
    };
    Ok(ImageRef {
        id,
        format: image.format,
        checksum: image.checksum.clone().unwrap_or_default(),
        size: image.size.unwrap_or(0),
    })
}

/// Report every instance present on a host (agent only).
#[utoipa::path(put, path = "/v1/agent/hosts/{id}/report", tag = "agent", request_body = HostReport,
    params(("id" = String, Path)), responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn report(
    State(state): State<AppState>,
    _agent: AgentCaller,
    ApiPath(host): ApiPath<HostId>,
    ApiJson(report): ApiJson<HostReport>,
) -> ApiResult<StatusCode> {
    state
        .store
        .touch_host(host)
        .await
        .map_err(ApiError::from_store("host"))?;
    state.store.apply_host_report(host, &report).await?;
    // A guest that powered itself off changes desired state too.
    if report.instances.iter().any(|i| i.guest_shutdown) {
        state.desired_state_changed();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Download an image file (agent only), streamed from disk.
#[utoipa::path(get, path = "/v1/agent/images/{id}/file", tag = "agent",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream"), (status = 404, body = ErrorBody)))]
pub async fn image_file(
    State(state): State<AppState>,
    _agent: AgentCaller,
    ApiPath(id): ApiPath<ImageId>,
) -> ApiResult<Response> {
    let image = state
        .store
        .image_any_project(id)
        .await
        .map_err(ApiError::from_store("image"))?;
    if image.status != ImageStatus::Active {
        return Err(ApiError::not_found("image file"));
    }
    let file = tokio::fs::File::open(image_path(&state.images_dir, id))
        .await
        .map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .map_err(ApiError::internal)
}

/// List hosts (admin only).
#[utoipa::path(get, path = "/v1/hosts", tag = "hosts",
    responses((status = 200, body = [Host]), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_hosts(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Host>>> {
    caller.require_admin()?;
    Ok(Json(state.store.list_hosts().await?))
}
