//! Admin pages: every project's instances (hosts are `admin_hosts`).
//! Others get 404.

use crate::layout::{self, page};
use crate::servers::row;
use crate::{Portal, Session};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

pub(crate) fn not_found(session: &Session) -> Response {
    layout::error_page(
        StatusCode::NOT_FOUND,
        Some(session),
        "Not found",
        "There is no such page.",
    )
}

pub(crate) fn tabs(active: &str) -> Markup {
    html! {
        nav.tabs aria-label="Admin" {
            a href="/admin/hosts" aria-current=[(active == "hosts").then_some("page")] { "Hosts" }
            a href="/admin/servers" aria-current=[(active == "servers").then_some("page")] { "All instances" }
        }
    }
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
