//! Usage records for billing: what a project held during a period, as JSON
//! or CSV.

use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use super::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nubis_api::traffic::Period;
use nubis_api::usage_records::UsageReport;
use nubis_api::ErrorBody;
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageRecordsQuery {
    /// The calendar month (UTC), `YYYY-MM`; default the current one.
    period: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The usage records of a project for a period (the caller's own project,
/// or any project for an admin). `{id}` may be `current` for the caller's
/// project. Periods still running count up to now.
#[utoipa::path(get, path = "/v1/projects/{id}/usage-records", tag = "usage",
    params(("id" = String, Path, description = "A project id, or `current`"), UsageRecordsQuery),
    responses(
        (status = 200, description = "The report", content(
            (UsageReport = "application/json"),
            (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<UsageRecordsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let project = caller.project_in_path(&state, &id).await?;
    let now = state.clock.now();
    let period = Period::requested(query.period.as_deref(), now).map_err(ApiError::bad_request)?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be json or csv, got '{other}'"
            )))
        }
    };
    // The project must exist (an admin may name any project).
    state
        .store
        .project_name(project)
        .await
        .map_err(ApiError::from_store("project"))?;
    let report = state.store.usage_report(project, period, now).await?;
    if !csv {
        return Ok(Json(report).into_response());
    }
    let filename = format!("nubis-usage-{project}-{}.csv", period.label());
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        report.to_csv(),
    )
        .into_response())
}
