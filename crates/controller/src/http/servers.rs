//! Servers: create, inspect, power actions, delete, console log.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use crate::store::networks::AddressScope;
use crate::store::ServerRecord;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::agent::PowerState;
use nubis_api::networks::server_dns_name;
use nubis_api::servers::{CreateServer, Server};
use nubis_api::ProjectId;
use nubis_api::{ErrorBody, ServerId};

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
    state.desired_state_changed();
    tracing::info!(server = %record.id, host = ?record.host, "server placed");
    let view = present(&state, project, vec![record]).await?.remove(0);
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// The API view of servers of one project: with addresses and DNS names.
async fn present(
    state: &AppState,
    project: ProjectId,
    records: Vec<ServerRecord>,
) -> ApiResult<Vec<Server>> {
    let mut addresses = state
        .store
        .addresses(AddressScope::Project(project))
        .await?;
    let networks = state.store.list_networks(project).await?;
    let project_name = state.store.project_name(project).await?;
    let mut out = Vec::new();
    for r in records {
        let addrs = addresses.remove(&r.id).unwrap_or_default();
        let dns = addrs
            .first()
            .and_then(|a| networks.iter().find(|n| n.id == a.network))
            .map(|n| server_dns_name(&r.name, &project_name, &n.dns_zone));
        let groups = state
            .store
            .server_security_groups(r.id)
            .await?
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        out.push(r.to_api(addrs, dns, groups, state.rental.lease_grace));
    }
    Ok(out)
}

pub(super) async fn present_one(state: &AppState, record: ServerRecord) -> ApiResult<Server> {
    Ok(present(state, record.project, vec![record])
        .await?
        .remove(0))
}

/// `GET /v1/servers` options.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListServers {
    /// Every project's servers (admins only).
    #[serde(default)]
    pub all_projects: bool,
}

/// List the project's servers (admins: every project's, with `all_projects=true`).
#[utoipa::path(get, path = "/v1/servers", tag = "servers", params(ListServers),
    responses((status = 200, body = [Server]), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<ListServers>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<Server>>> {
    // A malformed query is a 400 in the API's JSON error format.
    let axum::extract::Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !q.all_projects {
        let servers = state.store.list_servers(caller.user.project).await?;
        return Ok(Json(present(&state, caller.user.project, servers).await?));
    }
    caller.require_admin()?;
    let mut by_project: Vec<(ProjectId, Vec<ServerRecord>)> = Vec::new();
    for r in state.store.list_all_servers().await? {
        match by_project.iter_mut().find(|(p, _)| *p == r.project) {
            Some((_, v)) => v.push(r),
            None => by_project.push((r.project, vec![r])),
        }
    }
    let mut out = Vec::new();
    for (project, records) in by_project {
        out.extend(present(&state, project, records).await?);
    }
    Ok(Json(out))
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
    state.desired_state_changed_on(record.host);
    Ok((
        StatusCode::ACCEPTED,
        Json(present_one(state, record).await?),
    ))
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
    state.desired_state_changed_on(record.host);
    Ok((
        StatusCode::ACCEPTED,
        Json(present_one(&state, record).await?),
    ))
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
    state.desired_state_changed_on(record.host);
    Ok((
        StatusCode::ACCEPTED,
        Json(present_one(&state, record).await?),
    ))
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
    state.desired_state_changed();
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
