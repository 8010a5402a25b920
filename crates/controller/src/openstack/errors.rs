//! Errors in the shapes OpenStack clients parse. Handlers work with the
//! API's [`ApiError`] (so every store and domain error maps as on `/v1`)
//! and wrap it in the service's error type, which renders it:
//!
//! - Keystone (and the token check of every service, as keystonemiddleware
//!   answers): `{"error": {"code": 401, "title": "Unauthorized", "message": ...}}`
//! - Nova: `{"itemNotFound": {"code": 404, "message": ...}}`, the key
//!   chosen by status as Nova's fault wrapper does.

use crate::http::audit_recorder::ErrorCode;
use crate::http::error::ApiError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error of the Identity API (Keystone's shape).
#[derive(Debug)]
pub struct IdentityError(pub ApiError);

/// An error of the Compute API (Nova's shape).
#[derive(Debug)]
pub struct ComputeError(pub ApiError);

macro_rules! wraps_api_error {
    ($t:ty) => {
        impl From<ApiError> for $t {
            fn from(e: ApiError) -> Self {
                Self(e)
            }
        }
        impl From<StoreError> for $t {
            fn from(e: StoreError) -> Self {
                Self(e.into())
            }
        }
        impl From<crate::app::AppError> for $t {
            fn from(e: crate::app::AppError) -> Self {
                Self(e.into())
            }
        }
    };
}
wraps_api_error!(IdentityError);
wraps_api_error!(ComputeError);

/// 501: an operation of the real service that Nubis does not offer (yet).
pub fn not_implemented(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        format!("{what} is not implemented by Nubis's OpenStack API"),
    )
}

/// 404 for a path the service does not have.
pub fn unknown_path() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "The resource could not be found.",
    )
}

/// 405 for a method a known path does not take.
pub fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "The method is not allowed for the requested URL.",
    )
}

/// Keystone's `title` for a status: its reason phrase.
fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// Nova's fault key for a status (nova/api/openstack/wsgi.py's `Fault`).
pub fn nova_fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

/// The response with the audit code and `Retry-After` of `e`.
fn finish(e: &ApiError, mut response: Response) -> Response {
    if let Some(seconds) = e.retry_after {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response.extensions_mut().insert(ErrorCode(e.code));
    response
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = json!({"error": {
            "code": e.status.as_u16(),
            "title": title(e.status),
            "message": e.message,
        }});
        let mut response = (e.status, Json(body)).into_response();
        if e.status == StatusCode::UNAUTHORIZED {
            // keystoneauth reads where to authenticate from it.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        finish(&e, response)
    }
}

impl IntoResponse for ComputeError {
    fn into_response(self) -> Response {
        let e = self.0;
        // A missing or bad token is answered by keystonemiddleware in
        // front of Nova, in Keystone's shape.
        if e.status == StatusCode::UNAUTHORIZED {
            return IdentityError(e).into_response();
        }
        let body = json!({ nova_fault_name(e.status): {
            "code": e.status.as_u16(),
            "message": e.message,
        }});
        let response = (e.status, Json(body)).into_response();
        finish(&e, response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn nova_errors_are_keyed_by_fault_name() {
        let r = ComputeError(ApiError::not_found("flavor")).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let b = body_of(r).await;
        assert_eq!(b["itemNotFound"]["code"], 404);
        assert_eq!(b["itemNotFound"]["message"], "flavor not found");
        let b = body_of(ComputeError(ApiError::conflict("taken")).into_response()).await;
        assert_eq!(b["conflictingRequest"]["code"], 409);
        let b = body_of(ComputeError(not_implemented("x")).into_response()).await;
        assert_eq!(b["notImplemented"]["code"], 501);
    }

    #[tokio::test]
    async fn keystone_errors_have_a_title_and_401_names_the_auth_service() {
        let r = IdentityError(ApiError::unauthorized("no")).into_response();
        assert!(r.headers().contains_key("www-authenticate"));
        let b = body_of(r).await;
        assert_eq!(b["error"]["code"], 401);
        assert_eq!(b["error"]["title"], "Unauthorized");
        // A token refused by Nova is answered in Keystone's shape too.
        let b = body_of(ComputeError(ApiError::unauthorized("no")).into_response()).await;
        assert_eq!(b["error"]["title"], "Unauthorized");
    }
}
