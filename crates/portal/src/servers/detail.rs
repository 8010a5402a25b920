//! The detail page with its actions, console log, traffic chart and events,
//! and the console redirect.

use super::first_ip;

use crate::layout::{self, alert, csrf_field, notice, page, status, text, time};
use crate::{Fields, Portal, Session};
use axum::extract::{Form, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde_json::Value;
use std::collections::HashMap;

/// Inline SVG bars of daily traffic (in and out), no library needed.
fn usage_chart(usage: &Value) -> Markup {
    let series = usage["series"].as_array().cloned().unwrap_or_default();
    let max = series
        .iter()
        .map(|p| {
            p["inbound_bytes"]
                .as_u64()
                .unwrap_or(0)
                .max(p["outbound_bytes"].as_u64().unwrap_or(0))
        })
        .max()
        .unwrap_or(0)
        .max(1);
    // A slot per day of a month, so a few days do not make giant bars.
    let n = series.len().max(31) as f64;
    let (w, h) = (600.0, 140.0);
    let slot = w / n;
    let bar = (slot / 2.0 - 1.0).max(1.0);
    html! {
        @if series.is_empty() {
            p.muted { "No traffic recorded this month yet." }
        } @else {
            svg.chart viewBox={ "0 0 " (w) " " (h + 16.0) } role="img" aria-labelledby="chart-t" preserveAspectRatio="none" {
                title #chart-t { "Daily traffic this month: inbound and outbound" }
                @for (i, p) in series.iter().enumerate() {
                    @let inb = p["inbound_bytes"].as_u64().unwrap_or(0);
                    @let out = p["outbound_bytes"].as_u64().unwrap_or(0);
                    @let hi = (inb as f64 / max as f64) * h;
                    @let ho = (out as f64 / max as f64) * h;
                    @let x = i as f64 * slot;
                    rect.in x=(format!("{x:.1}")) y=(format!("{:.1}", h - hi)) width=(format!("{bar:.1}")) height=(format!("{hi:.1}")) {
                        title { (p["start"].as_str().unwrap_or("").get(..10).unwrap_or("")) ": in " (layout::bytes(inb)) }
                    }
                    rect.out x=(format!("{:.1}", x + bar + 1.0)) y=(format!("{:.1}", h - ho)) width=(format!("{bar:.1}")) height=(format!("{ho:.1}")) {
                        title { (p["start"].as_str().unwrap_or("").get(..10).unwrap_or("")) ": out " (layout::bytes(out)) }
                    }
                }
                line x1="0" y1=(h) x2=(w) y2=(h) stroke="currentColor" stroke-opacity="0.3";
            }
            p.legend { span.key.in {} "Inbound " span.key.out {} "Outbound" }
        }
    }
}

pub async fn detail(
    State(portal): State<Portal>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    detail_page(&portal, &session, &id, &q, None).await
}

async fn detail_page(
    portal: &Portal,
    session: &Session,
    id: &str,
    q: &HashMap<String, String>,
    error: Option<&str>,
) -> Response {
    let id = id.trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return layout::error_page(
            StatusCode::NOT_FOUND,
            Some(session),
            "Not found",
            "There is no such instance.",
        );
    }
    let r = session.get(portal, &format!("/v1/servers/{id}")).await;
    if !r.ok() {
        return layout::error_page(
            if r.status == StatusCode::NOT_FOUND {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_GATEWAY
            },
            Some(session),
            "Not found",
            &r.message(),
        );
    }
    let s = r.body;
    let usage = session
        .get(portal, &format!("/v1/servers/{id}/usage"))
        .await;
    let events = session
        .get(portal, &format!("/v1/servers/{id}/events"))
        .await;
    let log = session
        .get(portal, &format!("/v1/servers/{id}/console-log"))
        .await;
    let log_tail: String = {
        let lines: Vec<&str> = log.text.lines().collect();
        lines[lines.len().saturating_sub(200)..].join("\n")
    };
    let st = s["status"].as_str().unwrap_or("");
    let done = match q.get("done").map(String::as_str) {
        Some("start") => Some("Starting the instance."),
        Some("stop") => Some("Stopping the instance."),
        Some("reboot") => Some("Rebooting the instance."),
        Some("eject") => Some("The ISO was ejected: the next boot is from the disk."),
        _ => None,
    };
    let name = s["name"].as_str().unwrap_or(id).to_owned();
    let action = |a: &str, label: &str, class: &str, enabled: bool| {
        html! {
            form.inline method="post" action={ "/servers/" (id) "/action" } {
                (csrf_field(&session.csrf))
                input type="hidden" name="action" value=(a);
                button class=(class) type="submit" disabled[!enabled] { (label) }
            }
        }
    };
    let body = html! {
        (notice(done))
        (alert(error))
        div.toolbar data-server=(id) data-status=(st) {
            (status(st))
            (action("start", "Start", "secondary", st == "stopped" || st == "error"))
            (action("stop", "Stop", "secondary", st == "running"))
            (action("reboot", "Reboot", "secondary", st == "running"))
            @if s["cdrom_attached"].as_bool() == Some(true) {
                (action("eject", "Eject ISO", "secondary", st != "deleting"))
            }
            form.inline method="post" action={ "/servers/" (id) "/console" } {
                (csrf_field(&session.csrf))
                button.secondary #console-button type="submit" disabled[st != "running"] { "Console" }
            }
            (action("delete", "Delete", "danger", st != "deleting"))
        }
        @if let Some(fault) = s["fault"].as_str() {
            div.alert.error role="alert" { "Fault: " (fault) }
        }
        div.grid {
            section.card aria-labelledby="overview-h" {
                h2 #overview-h { "Overview" }
                dl.props {
                    dt { "ID" } dd { code { (id) } }
                    dt { "Address" } dd #address { (first_ip(&s)) }
                    dt { "DNS name" } dd #dns { (text(&s["dns_name"])) }
                    dt { "Size" } dd { (s["vcpus"]) " vCPU · " (s["memory_mib"]) " MiB · " (s["disk_gib"]) " GiB" }
                    dt { "Key pair" } dd { (text(&s["key_name"])) }
                    dt { "Bandwidth" } dd {
                        "in " (s["bandwidth"]["inbound"]["average_mbit"].as_u64().map(|m| format!("{m} Mbit/s")).unwrap_or_else(|| "unlimited".into()))
                        ", out " (s["bandwidth"]["outbound"]["average_mbit"].as_u64().map(|m| format!("{m} Mbit/s")).unwrap_or_else(|| "unlimited".into()))
                    }
                    dt { "Created" } dd { (time(&s["created_at"])) }
                    dt { "Launched" } dd { (time(&s["launched_at"])) }
                }
            }
            section.card aria-labelledby="traffic-h" {
                h2 #traffic-h { "Traffic this month" }
                @if usage.ok() {
                    p {
                        "In " strong { (layout::bytes(usage.body["inbound_bytes"].as_u64().unwrap_or(0))) }
                        " · out " strong { (layout::bytes(usage.body["outbound_bytes"].as_u64().unwrap_or(0))) }
                        @if let Some(gib) = usage.body["quota"]["monthly_gib"].as_f64() {
                            " · quota " (gib) " GiB (" (text(&usage.body["quota"]["policy"])) ")"
                        }
                        " · state " (text(&usage.body["traffic_state"]))
                    }
                    (usage_chart(&usage.body))
                } @else {
                    p.muted { (usage.message()) }
                }
            }
        }
        section.card aria-labelledby="events-h" {
            h2 #events-h { "Events" }
            @let evs = events.list();
            @if evs.is_empty() { p.muted { "No events." } } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "Time" } th scope="col" { "Event" } th scope="col" { "Message" } } }
                        tbody {
                            @for e in evs.iter().rev() {
                                tr { td { (time(&e["time"])) } td { (text(&e["kind"])) } td { (text(&e["message"])) } }
                            }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="log-h" {
            h2 #log-h { "Console log" }
            @if log.ok() {
                @if log_tail.is_empty() { p.muted { "Nothing yet." } } @else {
                    pre.log tabindex="0" aria-label="Console log, last 200 lines" { (log_tail) }
                }
            } @else {
                p.muted { (log.message()) }
            }
        }
    };
    page(&name, Some(session), "/servers", body).into_response()
}

pub async fn action(
    State(portal): State<Portal>,
    session: Session,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(fields);
    if let Err(r) = session.check(&f) {
        return r;
    }
    let a = f.get("action");
    let (method, path) = match a {
        "start" | "stop" | "reboot" | "eject" => (Method::POST, format!("/v1/servers/{id}/{a}")),
        "delete" => (Method::DELETE, format!("/v1/servers/{id}")),
        _ => {
            return layout::error_page(
                StatusCode::BAD_REQUEST,
                Some(&session),
                "Unknown action",
                "That action does not exist.",
            )
        }
    };
    if id.contains('/') || id.contains('?') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let r = session.call(&portal, method, &path, None).await;
    if r.ok() {
        return if a == "delete" {
            Redirect::to("/servers?done=deleted").into_response()
        } else {
            Redirect::to(&format!("/servers/{id}?done={a}")).into_response()
        };
    }
    let msg = format!("Could not {a} the instance: {}", r.message());
    let mut resp = detail_page(&portal, &session, &id, &HashMap::new(), Some(&msg)).await;
    if resp.status().is_success() {
        *resp.status_mut() = if r.status.is_client_error() {
            r.status
        } else {
            StatusCode::BAD_GATEWAY
        };
    }
    resp
}

/// Opens the browser console: asks the API for a short-lived console URL
/// and sends the browser there.
pub async fn console(
    State(portal): State<Portal>,
    session: Session,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = session.check(&Fields(fields)) {
        return r;
    }
    if id.contains('/') || id.contains('?') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let r = session
        .call(
            &portal,
            Method::POST,
            &format!("/v1/servers/{id}/console"),
            None,
        )
        .await;
    let url = r.body["url"].as_str().filter(|_| r.ok());
    // Only same-origin paths or http(s) URLs: never an open redirect to
    // something else (javascript:, data:).
    if let Some(url) = url.filter(|u| {
        (u.starts_with('/') && !u.starts_with("//"))
            || u.starts_with("https://")
            || u.starts_with("http://")
    }) {
        return Redirect::to(url).into_response();
    }
    // No console route at all (an older controller): say so plainly.
    let missing = (r.status == StatusCode::NOT_FOUND && r.message() == "no such API path")
        || r.status == StatusCode::METHOD_NOT_ALLOWED;
    let msg = if missing {
        "The browser console is not available on this cloud yet.".to_owned()
    } else {
        format!("Could not open the console: {}", r.message())
    };
    let mut resp = detail_page(&portal, &session, &id, &HashMap::new(), Some(&msg)).await;
    if resp.status().is_success() {
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    resp
}
