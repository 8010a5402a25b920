//! `GET /v1/audit`: the audit trail, newest first, filtered and paginated,
//! as JSON or JSON lines. Admins read every record; anyone else reads only
//! the records of their own project.

use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use super::AppState;
use crate::store::AuditFilter;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use nubis_api::audit::{AuditPage, Outcome, JSONL_MEDIA_TYPE, NEXT_MARKER_HEADER};
use nubis_api::{ErrorBody, ProjectId};
use serde::Deserialize;

/// Records per page by default, and at most (JSON; JSON lines exports).
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
const DEFAULT_EXPORT_LIMIT: u32 = 1000;
const MAX_EXPORT_LIMIT: u32 = 10_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this user's records: a user id or name.
    user: Option<String>,
    /// Only this project's records: a project id or `current`. Members of a
    /// project read only their own project's records, whatever this says.
    project: Option<String>,
    /// Only this action, e.g. `server.create`.
    action: Option<String>,
    /// Only this outcome: `success`, `denied` or `failure`.
    #[param(value_type = Option<Outcome>)]
    outcome: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Before this time (RFC 3339, exclusive).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// Records per page: 1 to 1000 (default 100); a JSON lines export takes
    /// up to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// The previous page's `next_marker`: records older than it.
    marker: Option<String>,
    /// `json` (default) or `jsonl` (one record per line; the next page's
    /// marker is in the `X-Next-Marker` header). `Accept: application/jsonl`
    /// also asks for JSON lines.
    #[param(pattern = "^jsonl?$")]
    format: Option<String>,
}

/// The audit trail: every state-changing call with its user, project,
/// source address, action, object and result, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of records", content(
            (AuditPage = "application/json"),
            (String = "application/jsonl"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let jsonl = match query.format.as_deref() {
        Some("json") => false,
        Some("jsonl") => true,
        None => accepts_jsonl(&headers),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be json or jsonl, got '{other}'"
            )))
        }
    };
    let (default_limit, max_limit) = if jsonl {
        (DEFAULT_EXPORT_LIMIT, MAX_EXPORT_LIMIT)
    } else {
        (DEFAULT_LIMIT, MAX_LIMIT)
    };
    let limit = query.limit.unwrap_or(default_limit);
    if limit == 0 || limit > max_limit {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {max_limit}, got {limit}"
        )));
    }
    let filter = AuditFilter {
        user: query.user.filter(|u| !u.is_empty()),
        project: visible_project(&caller, query.project.as_deref())?,
        action: query.action.filter(|a| !a.is_empty()),
        outcome: query
            .outcome
            .as_deref()
            .map(|o| {
                Outcome::parse(o).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "outcome must be success, denied or failure, got '{o}'"
                    ))
                })
            })
            .transpose()?,
        since: time_param("since", query.since.as_deref())?,
        until: time_param("until", query.until.as_deref())?,
        before: query.marker.filter(|m| !m.is_empty()),
    };
    // This controller's own recent calls are in the trail before it is read.
    state.audit.flush().await;
    let mut events = state.store.audit_events(&filter, limit + 1).await?;
    let next_marker = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events.last().map(|e| e.id.clone())
    } else {
        None
    };
    if !jsonl {
        return Ok(Json(AuditPage {
            events,
            next_marker,
        })
        .into_response());
    }
    let mut body = String::new();
    for e in &events {
        body.push_str(&serde_json::to_string(e).map_err(ApiError::internal)?);
        body.push('\n');
    }
    let mut response = ([(header::CONTENT_TYPE, JSONL_MEDIA_TYPE)], body).into_response();
    if let Some(marker) = next_marker.and_then(|m| m.parse().ok()) {
        response.headers_mut().insert(NEXT_MARKER_HEADER, marker);
    }
    Ok(response)
}

/// The project whose records the caller may read with this `project`
/// parameter: admins any (or all, `None`); others only their own, and
/// naming another answers 404 as if it did not exist.
fn visible_project(caller: &Caller, asked: Option<&str>) -> ApiResult<Option<ProjectId>> {
    let own = caller.user.project;
    let asked = match asked.filter(|p| !p.is_empty()) {
        None => None,
        Some("current") => Some(own),
        Some(raw) => Some(
            raw.parse::<ProjectId>()
                .map_err(|_| ApiError::not_found("project"))?,
        ),
    };
    if caller.user.admin {
        return Ok(asked);
    }
    match asked {
        None => Ok(Some(own)),
        Some(p) if p == own => Ok(Some(own)),
        Some(_) => Err(ApiError::not_found("project")),
    }
}

fn time_param(name: &str, raw: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    raw.filter(|t| !t.is_empty())
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "{name} must be an RFC 3339 time such as 2026-11-29T12:00:00Z: {e}"
                    ))
                })
        })
        .transpose()
}

/// Whether the client asked for JSON lines in `Accept`.
fn accepts_jsonl(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.split(';').next().unwrap_or("").trim();
            t.eq_ignore_ascii_case(JSONL_MEDIA_TYPE)
                || t.eq_ignore_ascii_case("application/x-ndjson")
        })
}
