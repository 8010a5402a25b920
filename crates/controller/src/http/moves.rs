//! Moving servers: cold migration, live migration (started here; the agents
//! carry it out), a server's migrations, evacuation of a down host. The
//! rules are in `crate::app::moves`.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use crate::app::moves::{self, MoveError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nubis_api::migrations::{Evacuation, MigrateServer, Migration, MigrationKind};
use nubis_api::{ErrorBody, HostId, ServerId};

/// A refused move as an API error.
pub(super) fn move_error(e: MoveError) -> ApiError {
    match e {
        MoveError::Conflict(m) => ApiError::conflict(m),
        MoveError::BadRequest(m) => ApiError::bad_request(m),
        MoveError::NoHost(m) => ApiError::new(StatusCode::CONFLICT, "no_capacity", m),
        MoveError::Store(e) => ApiError::from_store("server")(e),
    }
}

async fn start(
    state: &AppState,
    caller: &Caller,
    id: ServerId,
    req: MigrateServer,
    kind: MigrationKind,
) -> ApiResult<(StatusCode, Json<Migration>)> {
    // Another project's server is 404 before anything else is said.
    super::servers::find(state, caller, id).await?;
    if req.host.is_some() {
        caller.require_admin()?;
    }
    let record = moves::start_migration(
        &state.store,
        id,
        caller.user.project,
        kind,
        req.host.as_deref(),
        chrono::Utc::now(),
        &state.placement,
    )
    .await
    .map_err(move_error)?;
    wake_concerned(state, &[&record.migration]).await;
    Ok((StatusCode::ACCEPTED, Json(record.migration)))
}

/// Wakes the agents whose desired state the moves changed (see
/// `moves::hosts_concerned`): the moves are made, so if those hosts cannot
/// be read every agent is woken instead (only work for the others).
pub(super) async fn wake_concerned(state: &AppState, migrations: &[&Migration]) {
    let mut hosts = std::collections::HashSet::new();
    for m in migrations {
        match moves::hosts_concerned(&state.store, m).await {
            Ok(more) => hosts.extend(more),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which hosts a move concerns; waking all");
                state.desired_state_changed();
                return;
            }
        }
    }
    state.desired_state_changed_on(hosts);
}

/// Move a stopped server to another host (`host`: admins only): its disk is
/// copied host to host, or found in a store both hosts share.
#[utoipa::path(post, path = "/v1/servers/{id}/migrate", tag = "servers",
    params(("id" = String, Path)), request_body = MigrateServer,
    responses((status = 202, body = Migration), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn migrate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
    ApiJson(req): ApiJson<MigrateServer>,
) -> ApiResult<(StatusCode, Json<Migration>)> {
    start(&state, &caller, id, req, MigrationKind::Cold).await
}

/// Move a running server to another host with QEMU live migration.
#[utoipa::path(post, path = "/v1/servers/{id}/live-migrate", tag = "servers",
    params(("id" = String, Path)), request_body = MigrateServer,
    responses((status = 202, body = Migration), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn live_migrate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
    ApiJson(req): ApiJson<MigrateServer>,
) -> ApiResult<(StatusCode, Json<Migration>)> {
    start(&state, &caller, id, req, MigrationKind::Live).await
}

/// A server's moves, newest first (the first `running` one is under way).
/// Admins may read any server's (they drain hosts of every project).
#[utoipa::path(get, path = "/v1/servers/{id}/migrations", tag = "servers",
    params(("id" = String, Path)),
    responses((status = 200, body = [Migration]), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<Json<Vec<Migration>>> {
    super::server_terms::manageable(&state, &caller, id).await?;
    Ok(Json(state.store.server_migrations(id).await?))
}

/// Restart a down host's servers on other hosts (admin only).
#[utoipa::path(post, path = "/v1/hosts/{id}/evacuate", tag = "hosts",
    params(("id" = String, Path)),
    responses((status = 200, body = Evacuation), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn evacuate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(host): ApiPath<HostId>,
) -> ApiResult<Json<Evacuation>> {
    caller.require_admin()?;
    let done = moves::evacuate(&state.store, host, chrono::Utc::now(), &state.placement)
        .await
        .map_err(|e| match e {
            MoveError::Store(crate::store::StoreError::NotFound) => ApiError::not_found("host"),
            e => move_error(e),
        })?;
    state.desired_state_changed_on(done.concerned);
    Ok(Json(done.evacuation))
}
