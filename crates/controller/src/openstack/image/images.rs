//! `/image/v2/images`: create, list, show, delete and the file upload,
//! translated onto `app::images` (the rules `/v1/images` follows) and the
//! store. Images are named by id only, as in Glance.

use super::errors::ImageError;
use super::listing::ListQuery;
use super::view::{self, parse_config_format, CONFIG_FORMAT_PROPERTY};
use super::ImageResult;
use crate::app::images::{
    content_length, create_image, delete_image, upload_file, upload_in_progress,
};
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::http::AppState;
use crate::openstack::auth::OsCaller;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nubis_api::images::{ConfigFormat, CreateImage, Image, ImageFormat, Visibility};
use nubis_api::{ImageId, Name};
use serde_json::{json, Map, Value};

/// What `os_distro`/`os_version` are when the request has none (Nubis
/// records both).
const UNKNOWN: &str = "unknown";

fn bad(m: impl Into<String>) -> ImageError {
    ImageError(ApiError::bad_request(m))
}

/// Glance's 404 for an image id.
fn no_image(id: &str) -> ImageError {
    ImageError(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("No image found with ID {id}"),
    ))
}

fn render(state: &AppState, image: &Image) -> Value {
    view::image(image, upload_in_progress(state, image.id))
}

/// The image `id` (an id, never a name) the caller's project can see.
async fn visible(state: &AppState, caller: &Caller, id: &str) -> ImageResult<Image> {
    let not_found = || no_image(id);
    let Ok(id) = id.parse::<ImageId>() else {
        return Err(not_found());
    };
    match state
        .store
        .image_visible(caller.user.project, &id.to_string())
        .await
    {
        Ok(image) if image.id == id => Ok(image),
        Ok(_) | Err(crate::store::StoreError::NotFound) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

fn string_field<'a>(body: &'a Map<String, Value>, key: &str) -> ImageResult<Option<&'a str>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{key} must be a string"))),
    }
}

fn name_field(body: &Map<String, Value>, key: &str, default: Option<&str>) -> ImageResult<Name> {
    let value = string_field(body, key)?
        .or(default)
        .ok_or_else(|| bad(format!("{key} is required by Nubis")))?;
    value.parse().map_err(|e| bad(format!("{key}: {e}")))
}

/// Glance's create body as Nubis's [`CreateImage`]: the fields Nubis has,
/// the well-known properties it keeps, and a refusal for what it would
/// have to ignore wrongly (ids chosen by the client, protected images,
/// tags, minimums, other formats). Other extra properties are accepted
/// and not kept.
fn create_request(body: &Map<String, Value>) -> ImageResult<CreateImage> {
    let format: ImageFormat = string_field(body, "disk_format")?
        .ok_or_else(|| bad("disk_format is required by Nubis (qcow2, raw, iso, aki or ari)"))?
        .parse()
        .map_err(|e: String| bad(format!("Invalid disk format: {e}")))?;
    match string_field(body, "container_format")?.unwrap_or("bare") {
        "bare" => {}
        "aki" if format == ImageFormat::Aki => {}
        "ari" if format == ImageFormat::Ari => {}
        other => {
            return Err(bad(format!(
                "Invalid container format '{other}' for disk format {}: Nubis keeps bare images",
                format.as_str()
            )))
        }
    }
    let visibility = match string_field(body, "visibility")?.unwrap_or("private") {
        "private" => Visibility::Private,
        "public" => Visibility::Public,
        other => {
            return Err(bad(format!(
                "visibility '{other}' is not offered by Nubis (private or public)"
            )))
        }
    };
    if body.contains_key("id") {
        return Err(bad("Nubis chooses image ids; leave id out"));
    }
    if body
        .get("protected")
        .is_some_and(|p| p != &Value::Bool(false))
    {
        return Err(bad("Nubis has no protected images"));
    }
    if body
        .get("tags")
        .is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(bad("Nubis keeps no image tags"));
    }
    for key in ["min_disk", "min_ram"] {
        if body.get(key).is_some_and(|v| v.as_u64() != Some(0)) {
            return Err(bad(format!(
                "Nubis does not keep {key}: it checks a flavor's disk against the image's virtual size"
            )));
        }
    }
    let config_format = match string_field(body, CONFIG_FORMAT_PROPERTY)? {
        None => ConfigFormat::default(),
        Some(s) => parse_config_format(s).ok_or_else(|| {
            bad(format!(
                "{CONFIG_FORMAT_PROPERTY} must be config-2 or nocloud"
            ))
        })?,
    };
    Ok(CreateImage {
        name: name_field(body, "name", None)?,
        os: name_field(body, "os_distro", Some(UNKNOWN))?,
        version: name_field(body, "os_version", Some(UNKNOWN))?,
        format,
        kernel: string_field(body, "kernel_id")?.map(str::to_owned),
        initrd: string_field(body, "ramdisk_id")?.map(str::to_owned),
        cmdline: string_field(body, "os_command_line")?.map(str::to_owned),
        visibility,
        config_format,
    })
}

/// `POST /v2/images`: 201 with the queued image and its `Location`.
pub async fn create(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    body: Bytes,
) -> ImageResult<Response> {
    let body: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("Body is not a JSON object: {e}")))?;
    let req = create_request(&body)?;
    let image = create_image(&state, &caller, &req).await?;
    let mut response = (StatusCode::CREATED, Json(render(&state, &image))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v2/images/{}", image.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /v2/images`: the images the project can see (its own and public
/// ones), filtered, sorted and paged as asked; `next` when more follow.
pub async fn list(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ImageResult<Json<Value>> {
    let query = ListQuery::parse(&pairs)?;
    let images: Vec<Value> = state
        .store
        .list_images(caller.user.project)
        .await?
        .iter()
        .map(|i| render(&state, i))
        .collect();
    let (page, more) = query.apply(images)?;
    let mut body = json!({
        "images": page,
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    });
    if more {
        if let Some(last) = page.last().and_then(|i| i["id"].as_str()) {
            body["next"] = json!(format!("/v2/images?{}", query.next_query(last, &pairs)));
        }
    }
    Ok(Json(body))
}

/// `GET /v2/images/{id}`.
pub async fn show(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> ImageResult<Json<Value>> {
    let image = visible(&state, &caller, &id).await?;
    Ok(Json(render(&state, &image)))
}

/// `DELETE /v2/images/{id}`: 204, under `/v1`'s rules (owner or admin;
/// 409 while in use or being uploaded).
pub async fn delete(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> ImageResult<StatusCode> {
    let Ok(image_id) = id.parse::<ImageId>() else {
        return Err(no_image(&id));
    };
    delete_image(&state, &caller, &image_id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v2/images/{id}/file`: the bytes, streamed and checked by the same
/// code as `/v1`'s upload; 204 when the image is active. A refused upload
/// leaves the image queued (as Glance restores it) with no file kept.
pub async fn upload(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ImageResult<StatusCode> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    if !content_type.starts_with("application/octet-stream") {
        return Err(ImageError(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type {content_type} is not supported: send application/octet-stream"),
        )));
    }
    let image = visible(&state, &caller, &id).await?;
    upload_file(&state, &caller, image.id, content_length(&headers), body).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ImageResult<CreateImage> {
        create_request(v.as_object().unwrap())
    }

    #[test]
    fn well_known_properties_map_to_nubis_fields() {
        let r = req(json!({
            "name": "deb", "disk_format": "qcow2", "container_format": "bare",
            "os_distro": "debian", "os_version": "12", "kernel_id": "k", "ramdisk_id": "r",
            "os_command_line": "console=ttyS0", "nubis_config_format": "nocloud",
            "owner_specified.openstack.md5": "", "visibility": "public"
        }))
        .unwrap();
        assert_eq!(r.os.as_str(), "debian");
        assert_eq!(r.version.as_str(), "12");
        assert_eq!(r.kernel.as_deref(), Some("k"));
        assert_eq!(r.initrd.as_deref(), Some("r"));
        assert_eq!(r.cmdline.as_deref(), Some("console=ttyS0"));
        assert_eq!(r.config_format, ConfigFormat::Nocloud);
        assert_eq!(r.visibility, Visibility::Public);
        let r = req(json!({"name": "k", "disk_format": "aki", "container_format": "aki"})).unwrap();
        assert_eq!(r.os.as_str(), UNKNOWN);
    }

    #[test]
    fn what_nubis_cannot_keep_is_refused() {
        for bad in [
            json!({"name": "x"}),
            json!({"name": "x", "disk_format": "vmdk"}),
            json!({"name": "x", "disk_format": "qcow2", "container_format": "ovf"}),
            json!({"name": "x", "disk_format": "qcow2", "visibility": "shared"}),
            json!({"name": "x", "disk_format": "qcow2", "protected": true}),
            json!({"name": "x", "disk_format": "qcow2", "min_disk": 3}),
            json!({"name": "x", "disk_format": "qcow2", "tags": ["a"]}),
            json!({"name": "x", "disk_format": "qcow2", "id": "1"}),
            json!({"disk_format": "qcow2"}),
        ] {
            assert!(req(bad.clone()).is_err(), "{bad}");
        }
        assert!(
            req(json!({"name": "x", "disk_format": "qcow2", "min_disk": 0, "tags": []})).is_ok()
        );
    }
}
