//! Networks: list and create.

use crate::layout::{alert, csrf_field, notice, page, text, time};
use crate::{Fields, Portal, Session};
use axum::extract::{Form, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde_json::{json, Value};
use std::collections::HashMap;

fn list_page(
    session: &Session,
    nets: &[Value],
    f: &Fields,
    error: Option<&str>,
    info: Option<&str>,
) -> Markup {
    let body = html! {
        (notice(info))
        (alert(error))
        div.table-wrap {
            table {
                caption.sr { "Networks of your project" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Subnet" } th scope="col" { "Gateway" } th scope="col" { "DNS domain" } th scope="col" { "Created" } } }
                tbody {
                    @for n in nets {
                        tr {
                            td data-label="Name" { (text(&n["name"])) }
                            td data-label="Subnet" { (text(&n["cidr"])) }
                            td data-label="Gateway" { (text(&n["gateway"])) }
                            td data-label="DNS domain" { (text(&n["domain"])) }
                            td data-label="Created" { (time(&n["created_at"])) }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="net-h" {
            h2 #net-h { "Create a network" }
            form method="post" action="/networks" {
                (csrf_field(&session.csrf))
                div.row {
                    div.field {
                        label for="net-name" { "Name" }
                        input #net-name type="text" name="name" value=(f.get("name")) required maxlength="63" placeholder="backend";
                    }
                    div.field {
                        label for="net-cidr" { "Subnet (CIDR)" }
                        input #net-cidr type="text" name="cidr" value=(f.get("cidr")) required placeholder="10.65.1.0/24"
                            pattern="[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}" title="an IPv4 subnet inside the tenant pools, such as 10.65.1.0/24";
                    }
                    div.field {
                        label for="net-gw" { "Gateway (optional)" }
                        input #net-gw type="text" name="gateway" value=(f.get("gateway")) placeholder="first address"
                            pattern="[0-9]{1,3}(\\.[0-9]{1,3}){3}" title="an IPv4 address";
                    }
                }
                button.primary type="submit" { "Create network" }
            }
        }
    };
    page("Networks", Some(session), "/networks", body)
}

pub async fn list(
    State(portal): State<Portal>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = session.get(&portal, "/v1/networks").await;
    let info = q
        .contains_key("created")
        .then_some("The network was created.");
    let error = (!r.ok()).then(|| r.message());
    list_page(
        &session,
        &r.list(),
        &Fields(Vec::new()),
        error.as_deref(),
        info,
    )
    .into_response()
}

pub async fn create(
    State(portal): State<Portal>,
    session: Session,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(fields);
    if let Err(r) = session.check(&f) {
        return r;
    }
    let mut req = json!({"name": f.get("name"), "cidr": f.get("cidr")});
    if !f.get("gateway").is_empty() {
        req["gateway"] = json!(f.get("gateway"));
    }
    let r = session
        .call(&portal, Method::POST, "/v1/networks", Some(req))
        .await;
    if r.ok() {
        return Redirect::to("/networks?created=1").into_response();
    }
    let nets = session.get(&portal, "/v1/networks").await.list();
    let msg = format!("The network was not created: {}", r.message());
    (r.status, list_page(&session, &nets, &f, Some(&msg), None)).into_response()
}
