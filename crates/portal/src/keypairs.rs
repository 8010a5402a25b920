//! Key pairs: list, import a public key, or generate one and download its
//! private key (shown once).

use crate::layout::{alert, csrf_field, notice, page, text, time};
use crate::{Fields, Portal, Session};
use axum::extract::{Form, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use maud::{html, Markup};
use serde_json::{json, Value};
use std::collections::HashMap;

fn list_page(
    session: &Session,
    keys: &[Value],
    f: &Fields,
    error: Option<&str>,
    info: Option<&str>,
    created: Option<&Value>,
) -> Markup {
    let body = html! {
        (notice(info))
        (alert(error))
        @if let Some(k) = created {
            @if let Some(private) = k["private_key"].as_str() {
                section.card.highlight aria-labelledby="new-key-h" {
                    h2 #new-key-h { "Your new private key" }
                    p { strong { "Save it now: it is shown only this once and the cloud does not keep it." } }
                    @let name = k["name"].as_str().unwrap_or("key");
                    a.button.primary #download-key download={ (name) ".pem" }
                        href={ "data:application/x-pem-file;base64," (base64::engine::general_purpose::STANDARD.encode(private)) } {
                        "Download " (name) ".pem"
                    }
                    details {
                        summary { "Show the key" }
                        pre.log tabindex="0" { (private) }
                    }
                }
            }
        }
        div.table-wrap {
            table {
                caption.sr { "Key pairs of your project" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Fingerprint" } th scope="col" { "Created" } th scope="col" { span.sr { "Actions" } } } }
                tbody {
                    @for k in keys {
                        tr {
                            td data-label="Name" { (text(&k["name"])) }
                            td data-label="Fingerprint" { code { (text(&k["fingerprint"])) } }
                            td data-label="Created" { (time(&k["created_at"])) }
                            td {
                                form.inline method="post" action={ "/keypairs/" (k["id"].as_str().unwrap_or("")) "/delete" } {
                                    (csrf_field(&session.csrf))
                                    button.danger.small type="submit" aria-label={ "Delete key pair " (text(&k["name"])) } { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if keys.is_empty() { p.empty { "No key pairs yet." } }
        section.card aria-labelledby="kp-h" {
            h2 #kp-h { "Add a key pair" }
            form method="post" action="/keypairs" {
                (csrf_field(&session.csrf))
                div.field {
                    label for="kp-name" { "Name" }
                    input #kp-name type="text" name="name" value=(f.get("name")) required maxlength="63" placeholder="laptop";
                }
                div.field {
                    label for="kp-public" { "Public key (leave empty to generate a new key pair)" }
                    textarea #kp-public name="public_key" rows="3" spellcheck="false" placeholder="ssh-ed25519 AAAA…" { (f.get("public_key")) }
                }
                button.primary type="submit" { "Import or generate" }
            }
        }
    };
    page("Key pairs", Some(session), "/keypairs", body)
}

pub async fn list(
    State(portal): State<Portal>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = session.get(&portal, "/v1/keypairs").await;
    let info = match q.get("done").map(String::as_str) {
        Some("deleted") => Some("The key pair was deleted."),
        Some("imported") => Some("The public key was imported."),
        _ => None,
    };
    let error = (!r.ok()).then(|| r.message());
    list_page(
        &session,
        &r.list(),
        &Fields(Vec::new()),
        error.as_deref(),
        info,
        None,
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
    let mut req = json!({"name": f.get("name")});
    if !f.get("public_key").is_empty() {
        req["public_key"] = json!(f.get("public_key"));
    }
    let r = session
        .call(&portal, Method::POST, "/v1/keypairs", Some(req))
        .await;
    if r.ok() && r.body["private_key"].is_null() {
        return Redirect::to("/keypairs?done=imported").into_response();
    }
    let keys = session.get(&portal, "/v1/keypairs").await.list();
    if r.ok() {
        // Generated: the private key is in this answer only, so show it now
        // (not after a redirect) and never again.
        let info = format!(
            "Key pair {} generated.",
            r.body["name"].as_str().unwrap_or("")
        );
        let mut resp = list_page(
            &session,
            &keys,
            &Fields(Vec::new()),
            None,
            Some(&info),
            Some(&r.body),
        )
        .into_response();
        resp.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            "no-store".parse().expect("header"),
        );
        return resp;
    }
    let msg = format!("The key pair was not added: {}", r.message());
    let status = if r.status.is_client_error() {
        r.status
    } else {
        StatusCode::BAD_GATEWAY
    };
    (
        status,
        list_page(&session, &keys, &f, Some(&msg), None, None),
    )
        .into_response()
}

pub async fn delete(
    State(portal): State<Portal>,
    session: Session,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let r = match session
        .delete_from_form(&portal, fields, "keypairs", &id)
        .await
    {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    if r.ok() {
        return Redirect::to("/keypairs?done=deleted").into_response();
    }
    let keys = session.get(&portal, "/v1/keypairs").await.list();
    let msg = format!("The key pair was not deleted: {}", r.message());
    (
        r.status,
        list_page(&session, &keys, &Fields(Vec::new()), Some(&msg), None, None),
    )
        .into_response()
}
