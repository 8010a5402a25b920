//! Images: the list, and an upload form (record first, then the file with a
//! progress bar; `portal.js` does the two steps).

use crate::layout::{self, alert, csrf_field, notice, page, status, text, time};
use crate::{same, Fields, Portal, Session, CSRF_HEADER};
use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::html;
use serde_json::json;
use std::collections::HashMap;

fn list_page(
    session: &Session,
    images: &[serde_json::Value],
    f: &Fields,
    error: Option<&str>,
    info: Option<&str>,
) -> maud::Markup {
    let v = |k: &str| f.get(k).to_owned();
    let format = match f.get("format") {
        "" => "qcow2",
        x => x,
    };
    let body = html! {
        (notice(info))
        (alert(error))
        div.table-wrap {
            table {
                caption.sr { "Images of your project and public images" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "OS" } th scope="col" { "Format" } th scope="col" { "Status" } th scope="col" { "Size" } th scope="col" { "Created" } th scope="col" { span.sr { "Actions" } } } }
                tbody {
                    @for i in images {
                        tr {
                            td data-label="Name" { (text(&i["name"])) }
                            td data-label="OS" { (text(&i["os"])) " " (text(&i["version"])) }
                            td data-label="Format" { (text(&i["format"])) }
                            td data-label="Status" { (status(i["status"].as_str().unwrap_or(""))) }
                            td data-label="Size" { (i["size"].as_u64().map(layout::bytes).unwrap_or_else(|| "—".into())) }
                            td data-label="Created" { (time(&i["created_at"])) }
                            td {
                                @if i["project"] == session.user["project"] || session.admin() {
                                    form.inline method="post" action={ "/images/" (i["id"].as_str().unwrap_or("")) "/delete" } {
                                        (csrf_field(&session.csrf))
                                        button.danger.small type="submit" aria-label={ "Delete image " (text(&i["name"])) } { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="upload-h" {
            h2 #upload-h { "Upload an image" }
            form #upload method="post" action="/images" enctype="application/x-www-form-urlencoded" data-upload {
                (csrf_field(&session.csrf))
                div.row {
                    div.field {
                        label for="img-name" { "Name" }
                        input #img-name type="text" name="name" value=(v("name")) required maxlength="63" placeholder="debian-12";
                    }
                    div.field {
                        label for="img-os" { "Operating system" }
                        input #img-os type="text" name="os" value=(v("os")) required maxlength="63" placeholder="debian";
                    }
                    div.field {
                        label for="img-version" { "Version" }
                        input #img-version type="text" name="version" value=(v("version")) required maxlength="63" placeholder="12";
                    }
                    div.field {
                        label for="img-format" { "Format" }
                        select #img-format name="format" {
                            @for (val, label) in [("qcow2", "qcow2 disk"), ("raw", "raw disk"), ("iso", "ISO installer")] {
                                option value=(val) selected[format == val] { (label) }
                            }
                        }
                    }
                }
                div.field {
                    label for="img-file" { "File" }
                    input #img-file type="file" name="file" required accept=".qcow2,.img,.raw,.iso,application/octet-stream";
                }
                div.progress-box hidden {
                    label for="img-progress" { "Upload progress" }
                    progress #img-progress max="100" value="0" { "0%" }
                    span #img-progress-text aria-live="polite" { "" }
                }
                div.alert.error #upload-error role="alert" hidden {}
                button.primary type="submit" { "Upload" }
                p.hint { "The file goes straight into the cloud's image store and is checked there: \
                          its real format must match the one chosen." }
            }
        }
    };
    page("Images", Some(session), "/images", body)
}

pub async fn list(
    State(portal): State<Portal>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = session.get(&portal, "/v1/images").await;
    let info = if q.contains_key("uploaded") {
        Some("The image was uploaded and is ready to use.")
    } else if q.get("done").map(String::as_str) == Some("deleted") {
        Some("The image was deleted.")
    } else {
        None
    };
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

/// Creates the image record. Scripts (`Accept: application/json`) get the
/// image as JSON and then upload the file; plain forms get the page back.
pub async fn create(
    State(portal): State<Portal>,
    session: Session,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(fields);
    let wants_json = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if let Err(r) = session.check(&f) {
        return if wants_json {
            (
                StatusCode::FORBIDDEN,
                Json(json!({"error": {"code": "csrf", "message": "the page is out of date; reload it"}})),
            )
                .into_response()
        } else {
            r
        };
    }
    let req = json!({
        "name": f.get("name"), "os": f.get("os"), "version": f.get("version"),
        "format": f.get("format"),
    });
    let r = session
        .call(&portal, Method::POST, "/v1/images", Some(req))
        .await;
    if wants_json {
        return (r.status, Json(r.body)).into_response();
    }
    if r.ok() {
        return Redirect::to("/images").into_response();
    }
    let images = session.get(&portal, "/v1/images").await.list();
    let msg = format!("The image was not created: {}", r.message());
    (r.status, list_page(&session, &images, &f, Some(&msg), None)).into_response()
}

/// Streams an image file to the API (`PUT /v1/images/{id}/file`); the CSRF
/// token comes in the `X-CSRF-Token` header.
pub async fn upload(
    State(portal): State<Portal>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same(&session.csrf, token) {
        return (
            StatusCode::FORBIDDEN,
            Json(
                json!({"error": {"code": "csrf", "message": "the page is out of date; reload it"}}),
            ),
        )
            .into_response();
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let r = portal
        .send(
            Some(&session.token),
            Method::PUT,
            &format!("/v1/images/{id}/file"),
            body,
            Some(&ct),
        )
        .await;
    (r.status, Json(r.body)).into_response()
}

/// Deletes an image (the API refuses while a server uses it: the page
/// then shows why).
pub async fn delete(
    State(portal): State<Portal>,
    session: Session,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let r = match session
        .delete_from_form(&portal, fields, "images", &id)
        .await
    {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    if r.ok() {
        return Redirect::to("/images?done=deleted").into_response();
    }
    let images = session.get(&portal, "/v1/images").await.list();
    let msg = format!("The image was not deleted: {}", r.message());
    (
        r.status,
        list_page(&session, &images, &Fields(Vec::new()), Some(&msg), None),
    )
        .into_response()
}
