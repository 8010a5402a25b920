//! Glance's error shape: `{"code": "404 Not Found", "title": "Not Found",
//! "message": ...}` (webob's JSON error body), which openstacksdk and
//! glanceclient read `message` from. A missing or bad token is answered in
//! Keystone's shape, as keystonemiddleware in front of Glance does.

use crate::http::audit_recorder::ErrorCode;
use crate::http::error::ApiError;
use crate::openstack::errors::IdentityError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error of the Image API.
#[derive(Debug)]
pub struct ImageError(pub ApiError);

impl From<ApiError> for ImageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for ImageError {
    fn from(e: StoreError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ImageError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.status == StatusCode::UNAUTHORIZED {
            return IdentityError(e).into_response();
        }
        let reason = e.status.canonical_reason().unwrap_or("Error");
        let body = json!({
            "code": format!("{} {reason}", e.status.as_u16()),
            "title": reason,
            "message": e.message,
        });
        let mut response = (e.status, Json(body)).into_response();
        if let Some(seconds) = e.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(ErrorCode(e.code));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_carry_code_title_and_message() {
        let r = ImageError(ApiError::not_found("image")).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let b: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(b["code"], "404 Not Found");
        assert_eq!(b["title"], "Not Found");
        assert_eq!(b["message"], "image not found");
        let r = ImageError(ApiError::unauthorized("no")).into_response();
        assert!(r.headers().contains_key("www-authenticate"));
    }
}
