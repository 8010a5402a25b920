//! Servers: create, inspect, power actions, delete, console log.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use crate::store::server_lists::{ListScope, PageError};
use crate::store::ServerRecord;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nubis_api::agent::PowerState;
use nubis_api::audit::NEXT_MARKER_HEADER;
use nubis_api::networks::{server_dns_name, Network};
use nubis_api::servers::{CreateServer, Server};
use nubis_api::{ErrorBody, ProjectId, ServerId};
use std::collections::HashMap;

/// Create a server: validated, placed on a host (the claim taken in the
/// transaction that inserts it), then built asynchronously. When no host can
/// take it, nothing is created and the answer says why: 409 `no_capacity`,
/// or 503 `no_hosts` when no host is up.
#[utoipa::path(post, path = "/v1/servers", tag = "servers", request_body = CreateServer,
    responses((status = 202, body = Server), (status = 400, body = ErrorBody),
        (status = 403, description = "`quota_exceeded`: the project's quota has no room", body = ErrorBody),
        (status = 409, description = "`no_capacity`: no host has room (the message says what ruled hosts out); `conflict`: a duplicate name", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, description = "`no_hosts`: no host is up", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateServer>,
) -> ApiResult<(StatusCode, Json<Server>)> {
    let project = caller.user.project;
    let ctx = crate::app::create_server::CreateContext {
        store: &state.store,
        dns_zone: &state.dns_zone,
        clock: &state.clock,
        placement: &state.placement,
    };
    let record = crate::app::create_server::create_server(&ctx, project, &req).await?;
    state.project_servers_changed(project).await;
    tracing::info!(server = %record.id, host = ?record.host, "server placed");
    let view = present_one(&state, record).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// The API view of servers (of any projects): with addresses, DNS names
/// and security groups. Set-based: one query each for the addresses and the
/// groups of all of them, two per project (its name, its networks), never a
/// query per server.
pub(crate) async fn present(
    state: &AppState,
    records: Vec<ServerRecord>,
) -> ApiResult<Vec<Server>> {
    let ids: Vec<ServerId> = records.iter().map(|r| r.id).collect();
    let mut addresses = state.store.addresses_of(&ids).await?;
    let mut groups = state.store.security_group_names_of(&ids).await?;
    let mut projects: HashMap<ProjectId, (String, Vec<Network>)> = HashMap::new();
    for r in &records {
        if let std::collections::hash_map::Entry::Vacant(e) = projects.entry(r.project) {
            let name = state.store.project_name(r.project).await?;
            let networks = state.store.list_networks(r.project).await?;
            e.insert((name, networks));
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let (project_name, networks) = &projects[&r.project];
        let addrs = addresses.remove(&r.id).unwrap_or_default();
        let dns = addrs
            .first()
            .and_then(|a| networks.iter().find(|n| n.id == a.network))
            .map(|n| server_dns_name(&r.name, project_name, &n.dns_zone));
        let groups = groups.remove(&r.id).unwrap_or_default();
        out.push(r.to_api(addrs, dns, groups, state.rental.lease_grace));
    }
    Ok(out)
}

pub(super) async fn present_one(state: &AppState, record: ServerRecord) -> ApiResult<Server> {
    Ok(present(state, vec![record]).await?.remove(0))
}

/// Servers per page of `GET /v1/servers` by default, and at most (Nova's
/// `max_limit` is 1000 too): a project with more is read page by page.
pub const DEFAULT_LIST_LIMIT: u32 = 1000;
pub const MAX_LIST_LIMIT: u32 = 1000;

/// `GET /v1/servers` options.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListServers {
    /// Every project's servers (admins only).
    #[serde(default)]
    pub all_projects: bool,
    /// Servers per page: 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The id of the last server of the previous page (its `X-Next-Marker`):
    /// the page starts after it. Servers are in creation order.
    pub marker: Option<String>,
}

/// List the project's servers (admins: every project's, with
/// `all_projects=true`), oldest first, a page at a time: when more follow,
/// the `X-Next-Marker` header holds the marker of the next page.
#[utoipa::path(get, path = "/v1/servers", tag = "servers", params(ListServers),
    responses((status = 200, body = [Server],
            headers(("x-next-marker" = String, description = "The next page's marker, when there is one"))),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<ListServers>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    // A malformed query is a 400 in the API's JSON error format.
    let axum::extract::Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}"
        )));
    }
    let marker = match q.marker.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(m.parse::<ServerId>().map_err(|_| {
            ApiError::bad_request(format!("marker must be a server id, got '{m}'"))
        })?),
    };
    let scope = if q.all_projects {
        caller.require_admin()?;
        ListScope::All
    } else {
        ListScope::Project(caller.user.project)
    };
    let mut records = state
        .store
        .list_servers_page(scope, marker, limit + 1)
        .await
        .map_err(|e| match e {
            // Unknown, deleted and other projects' ids alike (as Nova does).
            PageError::UnknownMarker(_) => ApiError::bad_request(e.to_string()),
            PageError::Store(e) => e.into(),
        })?;
    let next_marker = if records.len() > limit as usize {
        records.truncate(limit as usize);
        records.last().map(|r| r.id)
    } else {
        None
    };
    let mut response = Json(present(&state, records).await?).into_response();
    if let Some(marker) = next_marker {
        let value = HeaderValue::from_str(&marker.to_string()).map_err(ApiError::internal)?;
        response.headers_mut().insert(NEXT_MARKER_HEADER, value);
    }
    Ok(response)
}

pub(super) async fn find(
    state: &AppState,
    caller: &Caller,
    id: ServerId,
) -> ApiResult<ServerRecord> {
    state
        .store
        .server(caller.user.project, id)
        .await
        .map_err(ApiError::from_store("server"))
}

/// Show a server.
#[utoipa::path(get, path = "/v1/servers/{id}", tag = "servers",
    params(("id" = String, Path)), responses((status = 200, body = Server), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<Json<Server>> {
    let record = find(&state, &caller, id).await?;
    Ok(Json(present_one(&state, record).await?))
}

/// Start a stopped server.
#[utoipa::path(post, path = "/v1/servers/{id}/start", tag = "servers",
    params(("id" = String, Path)), responses((status = 202, body = Server), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<(StatusCode, Json<Server>)> {
    set_power(&state, &caller, id, PowerState::Running).await
}

/// Stop a server: ACPI power-down, then a hard stop after a timeout.
#[utoipa::path(post, path = "/v1/servers/{id}/stop", tag = "servers",
    params(("id" = String, Path)), responses((status = 202, body = Server), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<(StatusCode, Json<Server>)> {
    set_power(&state, &caller, id, PowerState::Stopped).await
}

/// Answers a change of one server's desired state (power, reboot, CD-ROM),
/// which concerns its host only: wakes that host's agent, 202 with the
/// server.
async fn changed_on_its_host(
    state: &AppState,
    record: ServerRecord,
) -> ApiResult<(StatusCode, Json<Server>)> {
    state.desired_state_changed_on(record.host);
    Ok((
        StatusCode::ACCEPTED,
        Json(present_one(state, record).await?),
    ))
}

async fn set_power(
    state: &AppState,
    caller: &Caller,
    id: ServerId,
    power: PowerState,
) -> ApiResult<(StatusCode, Json<Server>)> {
    let current = find(state, caller, id).await?;
    if current.deleting {
        return Err(ApiError::conflict("the server is being deleted"));
    }
    if power == PowerState::Running && current.lease_expired && !current.lease_exempt {
        return Err(ApiError::conflict(
            "the server's lease has expired; renew it (POST /v1/servers/{id}/lease) before starting it",
        ));
    }
    let record = state
        .store
        .set_power_at(caller.user.project, id, power, state.clock.now())
        .await
        .map_err(ApiError::from_store("server"))?;
    changed_on_its_host(state, record).await
}

/// Reboot a running server (a hard reset of the virtual machine).
#[utoipa::path(post, path = "/v1/servers/{id}/reboot", tag = "servers",
    params(("id" = String, Path)), responses((status = 202, body = Server), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reboot(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<(StatusCode, Json<Server>)> {
    let current = find(&state, &caller, id).await?;
    if current.deleting || current.power != PowerState::Running {
        return Err(ApiError::conflict(format!(
            "only a running server can be rebooted; this one is {}",
            current.status()
        )));
    }
    let record = state
        .store
        .request_reboot(caller.user.project, id)
        .await
        .map_err(ApiError::from_store("server"))?;
    changed_on_its_host(&state, record).await
}

/// Eject the ISO from a server's CD-ROM drive, so that it boots from its
/// disk: a running guest loses the medium at once and boots from disk at its
/// next reboot; a stopped one boots from disk at its next start.
#[utoipa::path(post, path = "/v1/servers/{id}/eject", tag = "servers",
    params(("id" = String, Path)), responses((status = 202, body = Server), (status = 404, body = ErrorBody),
        (status = 409, description = "no ISO in the drive, or the server is being deleted", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn eject(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<(StatusCode, Json<Server>)> {
    let record = state
        .store
        .eject_cdrom(caller.user.project, id)
        .await
        .map_err(ApiError::from_store("server"))?;
    changed_on_its_host(&state, record).await
}

/// Delete a server; its host removes the VM, disk, sockets and logs.
#[utoipa::path(delete, path = "/v1/servers/{id}", tag = "servers",
    params(("id" = String, Path)), responses((status = 202), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<StatusCode> {
    state
        .store
        .mark_deleting_at(caller.user.project, id, state.clock.now())
        .await
        .map_err(ApiError::from_store("server"))?;
    state.project_servers_changed(caller.user.project).await;
    Ok(StatusCode::ACCEPTED)
}

/// The serial console output of a server (fetched from its host's agent).
#[utoipa::path(get, path = "/v1/servers/{id}/console-log", tag = "servers",
    params(("id" = String, Path)),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn console_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<String> {
    let server = find(&state, &caller, id).await?;
    let Some(host_id) = server.host else {
        return Ok(String::new());
    };
    let host = state.store.host(host_id).await?;
    let url = format!(
        "{}/v1/instances/{}/console-log",
        host.url.trim_end_matches('/'),
        id
    );
    let resp = state
        .cluster
        .agent_http(host_id)
        .map_err(ApiError::internal)?
        .get(&url)
        .send()
        .await
        .map_err(|e| {
            // The error names the agent's URL: for the log, not the tenant.
            tracing::warn!(server = %id, host = %host_id, error = %e, "console log: the host did not answer");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "host_unreachable",
                "the server's host did not answer; try again later",
            )
        })?;
    match resp.status() {
        s if s.is_success() => resp.text().await.map_err(ApiError::internal),
        // The host has no such instance yet (still building): no output yet.
        reqwest::StatusCode::NOT_FOUND => Ok(String::new()),
        s => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "host_error",
            format!("the server's host answered {s}"),
        )),
    }
}
