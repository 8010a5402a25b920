//! The agent protocol, controller side: hosts register, long-poll for the
//! desired state of their instances, report what they observe, and fetch
//! image files.

use super::error::{ApiError, ApiResult};
use super::extract::{AgentCaller, ApiJson, ApiPath};
use super::images::image_path;
use super::AppState;
use crate::cluster::{check_registration, ClusterError};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use nubis_api::agent::{DesiredState, Host, HostReport, RegisterHost};
use nubis_api::images::ImageStatus;
use nubis_api::join::{JoinRequest, JoinResponse};
use nubis_api::{ErrorBody, HostId, ImageId};
use serde::Deserialize;
use tokio::io::AsyncSeekExt;

/// Join the cluster with a join token: registers the host and answers its
/// certificate (the only agent call made without a host certificate).
#[utoipa::path(post, path = "/v1/agent/join", tag = "agent", request_body = JoinRequest,
    responses((status = 200, body = JoinResponse), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    audit: crate::audit::AuditSlot,
    ApiJson(req): ApiJson<JoinRequest>,
) -> ApiResult<Json<JoinResponse>> {
    let joined = state
        .cluster
        // Wall-clock time, not the rental terms' (testable) clock:
        // a join token's expiry is a security bound.
        .join(&state.store, &req, chrono::Utc::now())
        .await
        .map_err(cluster_error)?;
    // The trail names the host that joined (a refused join stays anonymous).
    audit.agent(Some(joined.host.id));
    Ok(Json(joined))
}

/// A refused join or registration as an API error.
fn cluster_error(e: ClusterError) -> ApiError {
    match e {
        ClusterError::BadJoinToken => ApiError::unauthorized(e.to_string()),
        ClusterError::Invalid(m) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", m)
        }
        ClusterError::Forbidden(m) => ApiError::forbidden(m),
        ClusterError::Store(e) => e.into(),
        ClusterError::Internal(e) => ApiError::internal(format!("{e:#}")),
    }
}

/// Register a host at start (agent only, with its host certificate; the
/// name must be the certificate's host's and the URL one it names).
#[utoipa::path(post, path = "/v1/agent/hosts", tag = "agent", request_body = RegisterHost,
    responses((status = 200, body = Host), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    agent: AgentCaller,
    ApiJson(req): ApiJson<RegisterHost>,
) -> ApiResult<Json<Host>> {
    check_registration(&state.store, agent.host, &agent.identity, &req)
        .await
        .map_err(cluster_error)?;
    let host = state.store.register_host(&req).await?;
    let before = state.store.host_tunnel_ip(host.id).await?;
    if before != req.tunnel_ip {
        state
            .store
            .set_host_tunnel_ip(host.id, req.tunnel_ip)
            .await?;
        // Its peers' desired states name its tunnel address. Only then: a
        // registration wakes every long poll (thousands of hosts starting
        // at once must not wake each other).
        state.desired_state_changed();
    }
    state
        .store
        .set_host_shared_store(host.id, req.shared_store.as_deref())
        .await?;
    tracing::info!(host = %host.name, id = %host.id, url = %host.url, tunnel_ip = ?req.tunnel_ip, "host registered");
    Ok(Json(host))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DesiredQuery {
    /// The revision the agent already has: wait until it changes.
    after: Option<u64>,
}

/// The desired state of a host's instances (agent only). With `after`, waits
/// (up to `--long-poll` seconds, 25 by default) until desired state changes.
#[utoipa::path(get, path = "/v1/agent/hosts/{id}/desired", tag = "agent",
    params(("id" = String, Path), DesiredQuery),
    responses((status = 200, body = DesiredState), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn desired(
    State(state): State<AppState>,
    agent: AgentCaller,
    ApiPath(host): ApiPath<HostId>,
    Query(q): Query<DesiredQuery>,
) -> ApiResult<Json<DesiredState>> {
    agent.require_host(host)?;
    // Subscribed before the state is read: a change racing with the read
    // wakes the poll, so the agent never misses it.
    let mut wakeup = state.wakeups.subscribe(host);
    state
        .store
        .saw_host(host, state.placement.host_down_after / 2)
        .await
        .map_err(ApiError::from_store("host"))?;
    let deadline = tokio::time::Instant::now() + state.timeouts.long_poll;
    loop {
        let mut desired = crate::app::desired_state::host_desired_state(
            &state.store,
            host,
            state.rental.throttle,
        )
        .await?;
        desired.revision = fingerprint(&desired);
        // A host's revision is its desired state's fingerprint: the poll
        // answers when that changed, not at every change in the cloud.
        if q.after != Some(desired.revision) {
            return Ok(Json(desired));
        }
        if tokio::time::timeout_at(deadline, wakeup.changed())
            .await
            .is_err()
        {
            return Ok(Json(desired));
        }
    }
}

/// A fingerprint of a desired state (its revision left out): equal states
/// give equal fingerprints, on every controller.
fn fingerprint(desired: &DesiredState) -> u64 {
    use sha2::Digest;
    let json = serde_json::to_vec(&DesiredState {
        revision: 0,
        ..desired.clone()
    })
    .unwrap_or_default();
    let digest = sha2::Sha256::digest(json);
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Report every instance present on a host (agent only).
#[utoipa::path(put, path = "/v1/agent/hosts/{id}/report", tag = "agent", request_body = HostReport,
    params(("id" = String, Path)), responses((status = 204), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn report(
    State(state): State<AppState>,
    agent: AgentCaller,
    ApiPath(host): ApiPath<HostId>,
    ApiJson(mut report): ApiJson<HostReport>,
) -> ApiResult<StatusCode> {
    agent.require_host(host)?;
    // Read before the report is applied: a change made while it is
    // applied makes the next equal report count again.
    let marks = state.wakeups.marks(host);
    let digest = super::report_memo::digest(&report);
    if state.reports.repeats(host, &digest, marks) {
        state
            .store
            .saw_host(host, state.placement.host_down_after / 2)
            .await
            .map_err(ApiError::from_store("host"))?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let arriving = crate::live_migration::arriving_live(&state.store, host).await?;
    report.instances.retain(|i| !arriving.contains(&i.id));
    let host_name = state
        .store
        .host(host)
        .await
        .map_err(ApiError::from_store("host"))?
        .name;
    state
        .store
        .saw_host(host, state.placement.host_down_after / 2)
        .await
        .map_err(ApiError::from_store("host"))?;
    if let Some(addressing) = &report.addressing {
        state.store.set_host_addressing(host, addressing).await?;
    }
    state
        .store
        .apply_host_report_at(host, &report, state.clock.now())
        .await?;
    let moved = crate::app::moves::apply_report(
        &state.store,
        host,
        &host_name,
        &report,
        chrono::Utc::now(),
    )
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let changes = state
        .store
        .record_traffic(host, &report.traffic, state.clock.now())
        .await?;
    // A guest that powered itself off, or a server that used up its traffic
    // quota, changes desired state too; both concern only this host's
    // instances. A move's step concerns the hosts `apply_report` named.
    let mut concerned = moved;
    if !changes.is_empty() || report.instances.iter().any(|i| i.guest_shutdown) {
        concerned.insert(host);
    }
    if !concerned.is_empty() {
        state.desired_state_changed_on(concerned);
    }
    state.reports.applied(host, digest, marks);
    Ok(StatusCode::NO_CONTENT)
}

/// Download an image file (agent only), streamed from disk. A `Range:
/// bytes=N-` request (an agent resuming a stalled download) gets the file
/// from byte N on as `206 Partial Content`; any other range, the whole file.
#[utoipa::path(get, path = "/v1/agent/images/{id}/file", tag = "agent",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream"),
        (status = 206, content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody)))]
pub async fn image_file(
    State(state): State<AppState>,
    _agent: AgentCaller,
    ApiPath(id): ApiPath<ImageId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let image = state
        .store
        .image_any_project(id)
        .await
        .map_err(ApiError::from_store("image"))?;
    if image.status != ImageStatus::Active {
        return Err(ApiError::not_found("image file"));
    }
    let mut file = tokio::fs::File::open(image_path(&state.images_dir, id))
        .await
        .map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let from = range_start(headers.get(header::RANGE)).filter(|from| *from < len);
    let mut response = Response::builder().header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(from) = from {
        file.seek(std::io::SeekFrom::Start(from))
            .await
            .map_err(ApiError::internal)?;
        response = response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {from}-{}/{len}", len - 1),
        );
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    response
        .header(header::CONTENT_LENGTH, len - from.unwrap_or(0))
        .body(body)
        .map_err(ApiError::internal)
}

/// N of a `Range: bytes=N-` header, the only form agents send; `None` for
/// anything else, which is answered with the whole file (as HTTP allows).
fn range_start(range: Option<&axum::http::HeaderValue>) -> Option<u64> {
    range?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

#[cfg(test)]
mod range_tests {
    use super::range_start;
    use axum::http::HeaderValue;

    #[test]
    fn only_an_open_ended_byte_range_is_honoured() {
        let start = |v: &str| range_start(Some(&HeaderValue::from_str(v).unwrap()));
        assert_eq!(start("bytes=150000-"), Some(150_000));
        assert_eq!(start("bytes=0-"), Some(0));
        assert_eq!(start("bytes=0-99"), None);
        assert_eq!(start("bytes=-500"), None);
        assert_eq!(start("bytes=1-2,5-"), None);
        assert_eq!(start("items=5-"), None);
        assert_eq!(range_start(None), None);
    }
}
