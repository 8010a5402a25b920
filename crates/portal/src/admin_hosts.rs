//! The admin hosts page: state, whether each takes new servers, capacity
//! beside what is placed, instances, accelerator, CPU model, last seen;
//! buttons to disable (with a reason) or enable each, to drain an up host
//! (move its servers off) and to evacuate a down one. Others get 404.

use crate::admin::{not_found, tabs};
use crate::layout::{self, csrf_field, page, text, time};
use crate::{Fields, Portal, Session};
use axum::extract::{Form, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde_json::{json, Value};

/// `?done=disabled|enabled|drained|evacuated` after a change; after a drain
/// or an evacuation, how many servers started moving, were moving already,
/// or stay.
#[derive(serde::Deserialize, Default)]
pub struct Done {
    done: Option<String>,
    started: Option<u64>,
    moving: Option<u64>,
    stay: Option<u64>,
}

/// The host actions the page's buttons post.
const ACTIONS: [&str; 4] = ["disable", "enable", "drain", "evacuate"];

/// `used / total unit` of one resource of host `h`.
fn of(h: &Value, field: &str, unit: &str) -> String {
    let used = h["allocated"][field].as_u64().unwrap_or(0);
    let total = h[field].as_u64().unwrap_or(0);
    format!("{used} / {total}{unit}")
}

fn row(h: &Value, csrf: &str) -> Markup {
    let id = h["id"].as_str().unwrap_or("");
    let enabled = h["enabled"].as_bool().unwrap_or(true);
    html! {
        tr {
            td data-label="Name" { (text(&h["name"])) }
            td data-label="State" { (text(&h["state"])) }
            td data-label="New servers" {
                @if enabled { "enabled" } @else {
                    "disabled"
                    @if let Some(r) = h["disabled_reason"].as_str() { ": " (r) }
                }
            }
            td data-label="vCPUs" { (of(h, "vcpus", "")) }
            td data-label="Memory" { (of(h, "memory_mib", " MiB")) }
            td data-label="Disk" { (of(h, "disk_gib", " GiB")) }
            td data-label="Instances" { (text(&h["instances"])) }
            td data-label="Accelerator" { (text(&h["accel"])) }
            td data-label="CPU model" { (text(&h["cpu_model"])) }
            td data-label="Last seen" { (time(&h["last_seen"])) }
            td data-label="Action" {
                form.inline method="post" action={ "/admin/hosts/" (id) (if enabled { "/disable" } else { "/enable" }) } {
                    (csrf_field(csrf))
                    @if enabled {
                        label.sr for={ "reason-" (id) } { "Reason" }
                        input id={ "reason-" (id) } name="reason" placeholder="reason (optional)" maxlength="255";
                        button type="submit" { "Disable" }
                    } @else {
                        button type="submit" { "Enable" }
                    }
                }
                @if h["state"] == "up" {
                    form.inline method="post" action={ "/admin/hosts/" (id) "/drain" } {
                        (csrf_field(csrf))
                        button.secondary type="submit" title="Disable the host and move its servers to other hosts" { "Drain" }
                    }
                } @else {
                    form.inline method="post" action={ "/admin/hosts/" (id) "/evacuate" } {
                        (csrf_field(csrf))
                        button.secondary type="submit" title="Restart the down host's servers on other hosts" { "Evacuate" }
                    }
                }
            }
        }
    }
}

fn hosts_page(
    session: &Session,
    hosts: &[Value],
    error: Option<&str>,
    info: Option<&str>,
) -> Markup {
    let body = html! {
        (tabs("hosts"))
        (layout::alert(error))
        (layout::notice(info))
        div.table-wrap {
            table {
                caption.sr { "Hosts of the cloud" }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "State" } th scope="col" { "New servers" }
                    th scope="col" { "vCPUs (placed / host)" } th scope="col" { "Memory" } th scope="col" { "Disk" }
                    th scope="col" { "Instances" } th scope="col" { "Accelerator" } th scope="col" { "CPU model" }
                    th scope="col" { "Last seen" } th scope="col" { "Action" }
                } }
                tbody { @for h in hosts { (row(h, &session.csrf)) } }
            }
        }
    };
    page("Admin", Some(session), "/admin/hosts", body)
}

pub async fn hosts(
    State(portal): State<Portal>,
    session: Session,
    Query(done): Query<Done>,
) -> Response {
    if !session.admin() {
        return not_found(&session);
    }
    let r = session.get(&portal, "/v1/hosts").await;
    let error = (!r.ok()).then(|| r.message());
    let counts = format!(
        "{} started moving, {} already moving, {} stay (see the servers' events)",
        done.started.unwrap_or(0),
        done.moving.unwrap_or(0),
        done.stay.unwrap_or(0)
    );
    let info = match done.done.as_deref() {
        Some("disabled") => Some("The host takes no new servers.".to_owned()),
        Some("enabled") => Some("The host takes new servers again.".to_owned()),
        Some("drained") => Some(format!(
            "The host takes no new servers and is being drained: {counts}."
        )),
        Some("evacuated") => Some(format!("The host is being evacuated: {counts}.")),
        _ => None,
    };
    hosts_page(&session, &r.list(), error.as_deref(), info.as_deref()).into_response()
}

/// The `?done=...` of the page after `action` answered `answer`.
fn done_query(action: &str, answer: &Value) -> String {
    let len = |k: &str| answer[k].as_array().map_or(0, Vec::len);
    match action {
        "drain" => format!(
            "done=drained&started={}&moving={}&stay={}",
            len("started"),
            len("moving"),
            len("skipped")
        ),
        "evacuate" => format!(
            "done=evacuated&started={}&moving=0&stay={}",
            len("migrations"),
            len("unplaced")
        ),
        other => format!("done={other}d"),
    }
}

/// `POST /admin/hosts/{id}/disable|enable|drain|evacuate` from the page's
/// buttons.
pub async fn action(
    State(portal): State<Portal>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    if !session.admin() {
        return not_found(&session);
    }
    let f = Fields(fields);
    if let Err(r) = session.check(&f) {
        return r;
    }
    let valid_id = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid_id || !ACTIONS.contains(&action.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = (action == "disable").then(|| {
        let reason = f.get("reason").trim();
        if reason.is_empty() {
            json!({})
        } else {
            json!({ "reason": reason })
        }
    });
    let r = session
        .call(
            &portal,
            Method::POST,
            &format!("/v1/hosts/{id}/{action}"),
            Some(body.unwrap_or_else(|| json!({}))),
        )
        .await;
    if r.ok() {
        let query = done_query(&action, &r.body);
        return Redirect::to(&format!("/admin/hosts?{query}")).into_response();
    }
    let hosts = session.get(&portal, "/v1/hosts").await.list();
    let msg = format!("The host was not changed: {}", r.message());
    (r.status, hosts_page(&session, &hosts, Some(&msg), None)).into_response()
}
