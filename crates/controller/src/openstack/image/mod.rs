//! Image v2 (Glance) under `/image`: version discovery and the image
//! collection, over the same store and rules (`app::images`) as
//! `/v1/images`. Errors in Glance's JSON shape (`errors`); a missing or
//! bad token in Keystone's, as keystonemiddleware answers.

pub mod errors;
pub mod images;
pub mod listing;
pub mod versions;
pub mod view;

use super::operation;
use crate::http::{timeouts, AppState};
use axum::extract::{OriginalUri, Path};
use axum::http::Method;
use axum::routing::{any, get, put, MethodRouter};
use axum::Router;
use errors::ImageError;
use std::time::Duration;

/// Result of an image handler.
pub type ImageResult<T> = Result<T, ImageError>;

/// Glance v2 collections that exist but are not served (answered 501).
const KNOWN: &[&str] = &[
    "images", "schemas", "metadefs", "tasks", "info", "stores", "cache",
];

async fn unknown(Path(rest): Path<String>) -> ImageError {
    let first = rest
        .strip_prefix("v2/")
        .and_then(|below| below.split('/').next());
    match first {
        Some(c) if KNOWN.contains(&c) => {
            ImageError(super::errors::not_implemented(&format!("/image/{rest}")))
        }
        _ => ImageError(super::errors::unknown_path()),
    }
}

async fn bad_method() -> ImageError {
    ImageError(super::errors::method_not_allowed())
}

async fn not_implemented(method: Method, uri: OriginalUri) -> ImageError {
    ImageError(super::errors::not_implemented(&operation(&method, &uri)))
}

fn route(r: MethodRouter<AppState>) -> MethodRouter<AppState> {
    r.fallback(bad_method)
}

/// Image v2 under `/image`: the routes bounded in time like `/v1`'s, and
/// the upload, bounded by the idle time between bytes inside it (as
/// `/v1`'s upload).
pub fn routes(request_limit: Duration) -> Router<AppState> {
    let versions = || route(get(versions::versions));
    let bounded = Router::new()
        .route("/image", versions())
        .route("/image/", versions())
        .route("/image/versions", versions())
        .route(
            "/image/v2/images",
            route(get(images::list).post(images::create)),
        )
        .route(
            "/image/v2/images/{id}",
            route(
                get(images::show)
                    .delete(images::delete)
                    .patch(not_implemented),
            ),
        )
        .route("/image/{*rest}", any(unknown))
        .route_layer(axum::middleware::from_fn_with_state(
            request_limit,
            timeouts::within,
        ));
    let upload = Router::new().route(
        "/image/v2/images/{id}/file",
        route(
            put(images::upload)
                .get(not_implemented)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        ),
    );
    bounded.merge(upload)
}
