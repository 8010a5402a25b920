//! `/servers`: create (through `app::create_server`, as `POST /v1/servers`),
//! list and detail (filters, limit/marker pagination), show, delete. The
//! bodies are made by `server_view` from the `/v1` view of the same
//! records; actions are in `server_actions`.

use super::server_create::to_create_server;
use super::server_view::{self, nova_state, ViewContext};
use super::{parse_body, ComputeResult};
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::http::AppState;
use crate::openstack::auth::OsCaller;
use crate::openstack::catalog::public_base;
use crate::openstack::errors::ComputeError;
use crate::store::server_lists::{ListScope, PageError};
use crate::store::ServerRecord;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use nubis_api::ServerId;
use serde::Deserialize;
use serde_json::{json, Value};

/// Nova's `max_limit`: a page holds at most this many servers.
const MAX_LIMIT: usize = 1000;

/// `GET /servers` and `/servers/detail` query parameters (others, such as
/// `deleted` or `all_tenants`, are accepted and ignored as Nova does for
/// non-admins).
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, rename = "changes-since")]
    changes_since: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    flavor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    marker: Option<String>,
}

fn bad(message: impl Into<String>) -> ComputeError {
    ComputeError(ApiError::bad_request(message))
}

/// Every server of the project, oldest first (read page by page).
async fn all_servers(state: &AppState, caller: &Caller) -> ComputeResult<Vec<ServerRecord>> {
    let mut out: Vec<ServerRecord> = Vec::new();
    loop {
        let marker = out.last().map(|r| r.id);
        let page = state
            .store
            .list_servers_page(
                ListScope::Project(caller.user.project),
                marker,
                MAX_LIMIT as u32,
            )
            .await
            .map_err(|e| match e {
                PageError::UnknownMarker(_) => ComputeError(ApiError::internal(e)),
                PageError::Store(e) => e.into(),
            })?;
        let done = page.len() < MAX_LIMIT;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// The list's filters, checked once.
struct Filters {
    name: Option<regex::Regex>,
    status: Option<String>,
    changes_since: Option<chrono::DateTime<chrono::Utc>>,
    image: Option<String>,
    flavor: Option<String>,
}

impl Filters {
    fn parse(q: &ListQuery) -> ComputeResult<Self> {
        let name = q
            .name
            .as_deref()
            .map(|n| {
                regex::RegexBuilder::new(n)
                    .size_limit(1 << 16)
                    .build()
                    .map_err(|e| bad(format!("Invalid name filter: {e}")))
            })
            .transpose()?;
        let changes_since = q
            .changes_since
            .as_deref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .or_else(|_| {
                        chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                            .map(|t| t.and_utc())
                    })
                    .map_err(|_| bad(format!("Invalid changes-since value: {t}")))
            })
            .transpose()?;
        Ok(Self {
            name,
            status: q.status.as_deref().map(str::to_ascii_uppercase),
            changes_since,
            image: q.image.as_deref().map(last_segment),
            flavor: q.flavor.as_deref().map(last_segment),
        })
    }

    fn keeps(&self, r: &ServerRecord) -> bool {
        let status = nova_state(r.status(), r.power).status;
        self.name.as_ref().is_none_or(|n| n.is_match(&r.name))
            && self.status.as_deref().is_none_or(|s| s == status)
            && self
                .changes_since
                .is_none_or(|t| server_view::updated_at(r) >= t)
            && self
                .image
                .as_deref()
                .is_none_or(|i| i == r.image.to_string())
            && self
                .flavor
                .as_deref()
                .is_none_or(|f| f == server_view::flavor_ref(r))
    }
}

/// `flavorRef`/`imageRef` may be an id or a link ending in it.
pub fn last_segment(reference: &str) -> String {
    reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(reference)
        .to_owned()
}

/// One page of the servers a list query selects, and the next page's link.
async fn select(
    state: &AppState,
    caller: &Caller,
    q: &ListQuery,
    base: &str,
    path: &str,
) -> ComputeResult<(Vec<ServerRecord>, Option<Value>)> {
    let filters = Filters::parse(q)?;
    let limit = match q.limit.as_deref() {
        None => MAX_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| bad(format!("Invalid limit value: {l}")))?
            .min(MAX_LIMIT),
    };
    let all = all_servers(state, caller).await?;
    let start = match q.marker.as_deref() {
        None => 0,
        Some(m) => {
            all.iter()
                .position(|r| r.id.to_string() == m)
                .ok_or_else(|| bad(format!("marker [{m}] not found")))?
                + 1
        }
    };
    let mut page: Vec<ServerRecord> = all
        .into_iter()
        .skip(start)
        .filter(|r| filters.keeps(r))
        .take(limit + 1)
        .collect();
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|last| {
            json!([{"rel": "next", "href": format!(
                "{base}/compute/v2.1/{path}?limit={limit}&marker={}", last.id)}])
        })
    } else {
        None
    };
    Ok((page, next))
}

/// Full views of `records` (of the caller's project).
async fn details(
    state: &AppState,
    caller: &Caller,
    base: &str,
    records: Vec<ServerRecord>,
) -> ComputeResult<Vec<Value>> {
    let floating = state.store.list_floating_ips(caller.user.project).await?;
    let views = crate::http::servers::present(state, records.clone()).await?;
    let user_id = caller.user.id.to_string();
    let ctx = ViewContext {
        base,
        user_id: &user_id,
        floating: &floating,
    };
    Ok(records
        .iter()
        .zip(&views)
        .map(|(r, v)| server_view::detail(&ctx, r, v))
        .collect())
}

fn list_body(key: &str, servers: Vec<Value>, next: Option<Value>) -> Json<Value> {
    let mut body = json!({ key: servers });
    if let Some(next) = next {
        body["servers_links"] = next;
    }
    Json(body)
}

/// `GET /servers`: id, name, links.
pub async fn list(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ComputeResult<Json<Value>> {
    let base = public_base(&state, &headers);
    let (page, next) = select(&state, &caller, &q, &base, "servers").await?;
    let servers = page
        .iter()
        .map(|r| server_view::summary(&base, r))
        .collect();
    Ok(list_body("servers", servers, next))
}

/// `GET /servers/detail`: full views.
pub async fn list_detail(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ComputeResult<Json<Value>> {
    let base = public_base(&state, &headers);
    let (page, next) = select(&state, &caller, &q, &base, "servers/detail").await?;
    let servers = details(&state, &caller, &base, page).await?;
    Ok(list_body("servers", servers, next))
}

/// The caller's project's server `id`; anything else (another project's,
/// not an id) is Nova's 404.
pub async fn find(state: &AppState, caller: &Caller, id: &str) -> ComputeResult<ServerRecord> {
    let missing = || ComputeError(ApiError::not_found(&format!("Instance {id}")));
    let id: ServerId = id.parse().map_err(|_| missing())?;
    match state.store.server(caller.user.project, id).await {
        Ok(r) => Ok(r),
        Err(crate::store::StoreError::NotFound) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /servers/{id}`.
pub async fn show(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ComputeResult<Json<Value>> {
    let base = public_base(&state, &headers);
    let record = find(&state, &caller, &id).await?;
    let server = details(&state, &caller, &base, vec![record])
        .await?
        .remove(0);
    Ok(Json(json!({ "server": server })))
}

/// `POST /servers`: 202 with id, links, disk config and security groups;
/// the server builds asynchronously, as in Nova.
pub async fn create(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ComputeResult<(StatusCode, Json<Value>)> {
    let base = public_base(&state, &headers);
    let req = to_create_server(parse_body(&body)?)?;
    let project = caller.user.project;
    let ctx = crate::app::create_server::CreateContext {
        store: &state.store,
        dns_zone: &state.dns_zone,
        clock: &state.clock,
        placement: &state.placement,
    };
    let record = crate::app::create_server::create_server(&ctx, project, &req).await?;
    state.project_servers_changed(project).await;
    tracing::info!(server = %record.id, host = ?record.host, "server placed (OpenStack API)");
    let groups = crate::http::servers::present(&state, vec![record.clone()])
        .await?
        .remove(0)
        .security_groups;
    let id = record.id.to_string();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"server": {
            "id": id,
            "links": super::links(&base, "servers", &id),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
        }})),
    ))
}

/// `DELETE /servers/{id}`: 204; the host removes it (`GET` then 404s).
pub async fn delete(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> ComputeResult<StatusCode> {
    let record = find(&state, &caller, &id).await?;
    state
        .store
        .mark_deleting_at(caller.user.project, record.id, state.clock.now())
        .await
        .map_err(ApiError::from_store("server"))?;
    state.project_servers_changed(caller.user.project).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_may_be_links() {
        assert_eq!(last_segment("abc"), "abc");
        assert_eq!(last_segment("http://x/compute/flavors/abc"), "abc");
        assert_eq!(last_segment("http://x/compute/flavors/abc/"), "abc");
    }
}
