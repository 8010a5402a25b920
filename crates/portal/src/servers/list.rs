//! The instances list, kept current by polling.

use super::first_ip;

use crate::layout::{alert, notice, page, status, text};
use crate::{Portal, Session};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::{html, Markup};
use serde_json::Value;
use std::collections::HashMap;

/// One row of the instances table; `portal.js` builds the same from JSON.
pub fn row(s: &Value, project: bool) -> Markup {
    let id = s["id"].as_str().unwrap_or("");
    let st = s["status"].as_str().unwrap_or("");
    html! {
        tr data-id=(id) {
            td data-label="Name" { a href={ "/servers/" (id) } { (s["name"].as_str().unwrap_or(id)) } }
            @if project { td data-label="Project" { code { (text(&s["project"])) } } }
            td data-label="Status" data-field="status" { (status(st)) }
            td data-label="Address" data-field="address" { (first_ip(s)) }
            td data-label="DNS name" data-field="dns" { (text(&s["dns_name"])) }
            td data-label="Size" { (s["vcpus"]) " vCPU · " (s["memory_mib"]) " MiB · " (s["disk_gib"]) " GiB" }
        }
    }
}

pub async fn list(
    State(portal): State<Portal>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = session.get(&portal, "/v1/servers").await;
    let servers = r.list();
    let info = match q.get("done").map(String::as_str) {
        Some("deleted") => Some("The instance is being deleted."),
        _ => None,
    };
    let body = html! {
        (notice(info))
        @if !r.ok() { (alert(Some(&r.message()))) }
        div.actions { a.button.primary href="/servers/new" { "Launch an instance" } }
        @if servers.is_empty() {
            p.empty { "No instances yet. " a href="/servers/new" { "Launch your first one" } "." }
        }
        div.table-wrap {
            table #servers data-poll="/servers/poll" hidden[servers.is_empty()] {
                caption.sr { "Your instances; updated automatically" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Address" } th scope="col" { "DNS name" } th scope="col" { "Size" } } }
                tbody aria-live="polite" {
                    @for s in &servers { (row(s, false)) }
                }
            }
        }
    };
    page("Instances", Some(&session), "/servers", body).into_response()
}

/// The project's servers as JSON, for the list's polling script.
pub async fn poll(State(portal): State<Portal>, session: Session) -> Response {
    let r = session.get(&portal, "/v1/servers").await;
    (r.status, Json(r.body)).into_response()
}
