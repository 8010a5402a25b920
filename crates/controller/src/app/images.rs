//! The image catalog's rules, shared by `/v1/images` and Glance's
//! `/image/v2/images`: who may create, publish and delete an image, what
//! a kernel/initrd reference must be, and the upload (streamed to disk,
//! held to the project's quota and the size limit, inspected by our own
//! format parser before the image becomes usable). Errors are the API's
//! [`ApiError`]s (uploads need 408 and 413, which have no domain variant);
//! each API renders them in its own shape.

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::Caller;
use crate::http::AppState;
use crate::store::images::{NewImage, UploadedFile};
use crate::store::StoreError;
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use futures_util::StreamExt;
use nubis_api::images::{
    CreateImage, Image, ImageFormat, ImageStatus, Visibility, MAX_CMDLINE_LEN,
};
use nubis_api::{ImageId, ProjectId};
use nubis_image_format::DiskFormat;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Where an image's accepted file lives.
pub fn image_path(images_dir: &Path, id: ImageId) -> PathBuf {
    images_dir.join(id.to_string())
}

/// Creates an image record (status queued) for the caller's project:
/// publishing is for admins; kernel, initrd and cmdline belong on disk
/// images and must name active `aki`/`ari` images the project can see.
pub async fn create_image(
    state: &AppState,
    caller: &Caller,
    req: &CreateImage,
) -> ApiResult<Image> {
    if req.visibility == Visibility::Public {
        caller.require_admin()?;
    }
    if let Some(cmdline) = &req.cmdline {
        if cmdline.len() > MAX_CMDLINE_LEN || cmdline.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "cmdline must be at most {MAX_CMDLINE_LEN} characters without control characters"
            )));
        }
    }
    let project = caller.user.project;
    let kernel = boot_part(state, project, req.kernel.as_deref(), ImageFormat::Aki).await?;
    let initrd = boot_part(state, project, req.initrd.as_deref(), ImageFormat::Ari).await?;
    if (kernel.is_some() || initrd.is_some() || req.cmdline.is_some()) && !req.format.is_disk() {
        return Err(ApiError::bad_request(
            "kernel, initrd and cmdline belong on a qcow2 or raw image",
        ));
    }
    if initrd.is_some() && kernel.is_none() {
        return Err(ApiError::bad_request("an initrd needs a kernel"));
    }
    let image = state
        .store
        .create_image(&NewImage {
            project,
            name: req.name.as_str(),
            os: req.os.as_str(),
            version: req.version.as_str(),
            format: req.format,
            visibility: req.visibility,
            kernel,
            initrd,
            cmdline: req.cmdline.as_deref(),
            config_format: req.config_format,
        })
        .await?;
    Ok(image)
}

/// Resolves a kernel or initrd reference to an active image of the right format.
async fn boot_part(
    state: &AppState,
    project: ProjectId,
    reference: Option<&str>,
    format: ImageFormat,
) -> ApiResult<Option<ImageId>> {
    let Some(reference) = reference else {
        return Ok(None);
    };
    let what = if format == ImageFormat::Aki {
        "kernel image"
    } else {
        "initrd image"
    };
    let image = state
        .store
        .image_visible(project, reference)
        .await
        .map_err(ApiError::from_store_ref(what, reference))?;
    if image.format != format || image.status != ImageStatus::Active {
        return Err(ApiError::bad_request(format!(
            "{what} '{reference}' must be an active {} image",
            format.as_str()
        )));
    }
    Ok(Some(image.id))
}

/// The image `id_or_name` the caller may delete: visible to its project,
/// or (admins) any project's image named by its id.
async fn image_to_delete(state: &AppState, caller: &Caller, id_or_name: &str) -> ApiResult<Image> {
    let image = match state
        .store
        .image_visible(caller.user.project, id_or_name)
        .await
    {
        Ok(image) => image,
        // An admin may delete any project's image, named by its id.
        Err(StoreError::NotFound) if caller.user.admin => match id_or_name.parse::<ImageId>() {
            Ok(id) => state
                .store
                .image_any_project(id)
                .await
                .map_err(ApiError::from_store("image"))?,
            Err(_) => return Err(ApiError::not_found("image")),
        },
        Err(e) => return Err(ApiError::from_store("image")(e)),
    };
    if image.project != caller.user.project && !caller.user.admin {
        // Public, so visible: but only its owner or an admin may delete it.
        return Err(ApiError::forbidden(
            "only the image's project or an admin may delete it",
        ));
    }
    Ok(image)
}

/// Deletes an image (its owner, or an admin): refused with 409 `in_use`
/// while a server still uses it (as its disk's base or its ISO, or through
/// an image that boots with it as kernel or initrd), and while an upload
/// of it is in progress. Its file is removed at once; the agents drop
/// their cached copies when they next sweep their caches.
pub async fn delete_image(state: &AppState, caller: &Caller, id_or_name: &str) -> ApiResult<Image> {
    let image = image_to_delete(state, caller, id_or_name).await?;
    // An upload in progress would recreate the file after the delete.
    let _claim = UploadClaim::take(state, image.id)?;
    state
        .store
        .delete_image(image.id)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "in_use", m),
            other => ApiError::from_store("image")(other),
        })?;
    let path = image_path(&state.images_dir, image.id);
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // Queued: no file.
        // The row is gone, so nothing can use the file; log, do not fail.
        Err(e) => {
            tracing::warn!(image = %image.id, error = %e, "cannot remove a deleted image's file")
        }
    }
    // Agents sweep their image caches after each desired-state change.
    state.desired_state_changed();
    tracing::info!(image = %image.id, name = %image.name, "image deleted");
    Ok(image)
}

/// The request's `Content-Length`, if it has a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Whether an upload of `id` is in progress (Glance's `saving`).
pub fn upload_in_progress(state: &AppState, id: ImageId) -> bool {
    let uploads = state.uploads.lock().unwrap_or_else(|e| e.into_inner());
    uploads.contains(&id)
}

/// Receives an image's bytes (streamed to disk, never held in memory) for
/// one of the caller's project's queued images: `declared_len` (the
/// request's `Content-Length`) that cannot fit the `image_gib` quota is
/// refused before any byte is stored; the bytes are held to the quota and
/// the size limit as they arrive, then checked against the declared format.
/// On any failure the image stays queued and no file is kept, so the user
/// can upload again or delete it.
pub async fn upload_file(
    state: &AppState,
    caller: &Caller,
    id: ImageId,
    declared_len: Option<u64>,
    body: Body,
) -> ApiResult<Image> {
    let owned = state
        .store
        .image_any_project(id)
        .await
        .is_ok_and(|i| i.project == caller.user.project);
    if !owned {
        return Err(ApiError::not_found("image"));
    }
    let _claim = UploadClaim::take(state, id)?;
    // Read the status under the claim: an upload that finished since the
    // read above has made the image active.
    let image = state.store.image_any_project(id).await?;
    if image.status != ImageStatus::Queued {
        return Err(ApiError::conflict(
            "this image already has its file; images are immutable",
        ));
    }
    // The image_gib quota: a declared length that cannot fit is refused
    // before any byte is stored; the bytes received are held to what is
    // left as they arrive; and activation checks them again, with the
    // project locked, against uploads that finished meanwhile.
    let project = caller.user.project;
    if let Some(declared) = declared_len {
        state.store.check_image_room(project, declared).await?;
    }
    let room = state.store.image_bytes_left(project).await?;
    let final_path = image_path(&state.images_dir, id);
    // A unique temporary name: two concurrent uploads never share a file.
    let temp = state
        .images_dir
        .join(format!(".upload-{id}-{}", uuid::Uuid::new_v4()));
    // Removed on every way out but success: an error, a timeout, or the
    // client going away (which drops this future mid-stream).
    let mut temp = PartialFile {
        path: temp,
        keep: false,
    };
    let file = receive(state, body, &temp.path, image.format, room).await?;
    tokio::fs::rename(&temp.path, &final_path)
        .await
        .map_err(ApiError::internal)?;
    let image = match state.store.activate_image(id, &file).await {
        Ok(image) => image,
        Err(e) => {
            // Not accepted (quota, or deleted meanwhile): the file goes.
            let _ = tokio::fs::remove_file(&final_path).await;
            return Err(e.into());
        }
    };
    temp.keep = true; // Renamed and recorded: nothing left to remove.
    tracing::info!(image = %id, size = file.size, "image uploaded");
    Ok(image)
}

/// An upload's temporary file, removed when dropped unless kept.
struct PartialFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Synchronous, so it also runs when the request future is dropped.
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a partial upload");
            }
        }
    }
}

/// Marks an image as being uploaded until dropped (also when the request is
/// abandoned), so two concurrent uploads cannot both find the image queued
/// and overwrite each other's file and checksum.
struct UploadClaim<'a> {
    state: &'a AppState,
    id: ImageId,
}

impl<'a> UploadClaim<'a> {
    fn take(state: &'a AppState, id: ImageId) -> ApiResult<Self> {
        let mut uploads = state.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if !uploads.insert(id) {
            return Err(ApiError::conflict(
                "another upload of this image is in progress",
            ));
        }
        Ok(Self { state, id })
    }
}

impl Drop for UploadClaim<'_> {
    fn drop(&mut self) {
        let mut uploads = self.state.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.remove(&self.id);
    }
}

/// Streams the body into `temp` (hashing as it goes), then checks the bytes.
/// More than `room` bytes (what the project's image quota leaves) fail
/// with 403 `quota_exceeded` as soon as they arrive.
async fn receive(
    state: &AppState,
    body: Body,
    temp: &Path,
    format: ImageFormat,
    room: u64,
) -> ApiResult<UploadedFile> {
    let mut out = tokio::fs::File::create(temp)
        .await
        .map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    let idle = state.timeouts.upload_idle;
    loop {
        // An idle timeout, not a total one: a large upload over a slow link
        // may take hours, but a client that stops sending must not hold the
        // image's upload claim and a partial file forever.
        let next = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "no bytes received for {} s; the upload was abandoned and the image is \
                         still queued: upload its file again or delete it",
                        idle.as_secs_f64()
                    ),
                )
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > state.max_image_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("images may be at most {} bytes", state.max_image_bytes),
            ));
        }
        if size > room {
            return Err(ApiError::quota_exceeded(format!(
                "quota exceeded for image_gib: the project has room for {room} more bytes \
                 of images; the upload was abandoned and the image is still queued"
            )));
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    out.sync_all().await.map_err(ApiError::internal)?;
    drop(out);
    if size == 0 {
        return Err(ApiError::bad_request("the uploaded file is empty"));
    }
    let virtual_size = check_bytes(temp, format).await?;
    Ok(UploadedFile {
        size,
        virtual_size,
        checksum: hex::encode(hasher.finalize()),
    })
}

/// Inspects an uploaded file with our own parser: the real format must be
/// the declared one, and disk images must be self-contained.
async fn check_bytes(path: &Path, format: ImageFormat) -> ApiResult<u64> {
    let declared = match format {
        ImageFormat::Qcow2 => DiskFormat::Qcow2,
        ImageFormat::Raw => DiskFormat::Raw,
        // Must really be ISO 9660 (a qcow2 or anything else declared iso is refused).
        ImageFormat::Iso => DiskFormat::Iso,
        // Kernels and ramdisks are handed to QEMU as opaque blobs, never as disks.
        ImageFormat::Aki | ImageFormat::Ari => {
            let len = tokio::fs::metadata(path)
                .await
                .map_err(ApiError::internal)?
                .len();
            return Ok(len);
        }
    };
    let path = path.to_owned();
    let inspection =
        tokio::task::spawn_blocking(move || nubis_image_format::validate(&path, declared))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::bad_request(format!("image rejected: {e}")))?;
    Ok(inspection.virtual_size)
}
