//! Admin pages: hosts and every project's instances. Others get 404.

use crate::layout::{self, page, text, time};
use crate::servers::row;
use crate::{Portal, Session};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

fn not_found(session: &Session) -> Response {
    layout::error_page(
        StatusCode::NOT_FOUND,
        Some(session),
        "Not found",
        "There is no such page.",
    )
}

fn tabs(active: &str) -> Markup {
    html! {
        nav.tabs aria-label="Admin" {
            a href="/admin/hosts" aria-current=[(active == "hosts").then_some("page")] { "Hosts" }
            a href="/admin/servers" aria-current=[(active == "servers").then_some("page")] { "All instances" }
        }
    }
}

pub async fn hosts(State(portal): State<Portal>, session: Session) -> Response {
    if !session.admin() {
        return not_found(&session);
    }
    let r = session.get(&portal, "/v1/hosts").await;
    let body = html! {
        (tabs("hosts"))
        @if !r.ok() { (layout::alert(Some(&r.message()))) }
        div.table-wrap {
            table {
                caption.sr { "Hosts of the cloud" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Capacity" } th scope="col" { "Accelerator" } th scope="col" { "Agent" } th scope="col" { "Last seen" } } }
                tbody {
                    @for h in r.list() {
                        tr {
                            td data-label="Name" { (text(&h["name"])) }
                            td data-label="Capacity" { (h["vcpus"]) " vCPU · " (layout::bytes(h["memory_mib"].as_u64().unwrap_or(0) << 20)) " · " (h["disk_gib"]) " GiB" }
                            td data-label="Accelerator" { (text(&h["accel"])) }
                            td data-label="Agent" { code { (text(&h["url"])) } }
                            td data-label="Last seen" { (time(&h["last_seen"])) }
                        }
                    }
                }
            }
        }
    };
    page("Admin", Some(&session), "/admin/hosts", body).into_response()
}

pub async fn servers(State(portal): State<Portal>, session: Session) -> Response {
    if !session.admin() {
        return not_found(&session);
    }
    let r = session.get(&portal, "/v1/servers?all_projects=true").await;
    let body = html! {
        (tabs("servers"))
        @if !r.ok() { (layout::alert(Some(&r.message()))) }
        div.table-wrap {
            table {
                caption.sr { "Instances of every project" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Project" } th scope="col" { "Status" } th scope="col" { "Address" } th scope="col" { "DNS name" } th scope="col" { "Size" } } }
                tbody { @for s in r.list() { (row(&s, true)) } }
            }
        }
    };
    page("Admin", Some(&session), "/admin/servers", body).into_response()
}
