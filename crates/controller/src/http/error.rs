//! API errors: a status, a stable code and a message, rendered as
//! `{"error":{"code","message"}}`.

use crate::scheduler::PlacementError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nubis_api::ErrorBody;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503), if any.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` of `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 429 `too_many_requests`, to be retried after `seconds`.
    pub fn too_many_requests(message: impl Into<String>, seconds: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message).retry_after(seconds)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 403 `quota_exceeded`: the project's quota has no room (as Nova answers).
    pub fn quota_exceeded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "quota_exceeded", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// An internal failure: logged in full, answered without details.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the controller log",
        )
    }

    /// Maps `NotFound` to a 404 naming `what`, and other store errors as usual.
    pub fn from_store(what: &str) -> impl FnOnce(StoreError) -> ApiError + '_ {
        move |e| match e {
            StoreError::NotFound => ApiError::not_found(what),
            other => other.into(),
        }
    }
}

impl ApiError {
    /// For a reference inside a request body (an image, a key pair, ...):
    /// `NotFound` becomes a 400 "`what` '`reference`' not found", since the
    /// request, not the URL, names something that does not exist.
    pub fn from_store_ref<'a>(
        what: &'a str,
        reference: &'a str,
    ) -> impl FnOnce(StoreError) -> ApiError + 'a {
        move |e| match e {
            StoreError::NotFound => {
                ApiError::bad_request(format!("{what} '{reference}' not found"))
            }
            other => other.into(),
        }
    }
}

/// A range or address the address-space rules refuse: 400
/// `address_not_allowed`, the message naming the rule.
impl From<crate::address_space::Violation> for ApiError {
    fn from(v: crate::address_space::Violation) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "address_not_allowed",
            v.to_string(),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found("resource"),
            StoreError::Conflict(m) => Self::conflict(m),
            StoreError::QuotaExceeded(m) => Self::quota_exceeded(m),
            StoreError::AddressSpace(v) => v.into(),
            // Kept synchronous (Nova answers 202 and fails the server later):
            // a create that cannot be placed changes nothing and says why.
            StoreError::NoValidHost(e @ PlacementError::NoHosts) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_hosts", e.to_string())
            }
            StoreError::NoValidHost(
                e @ (PlacementError::NoCapacity { .. } | PlacementError::HostRefused { .. }),
            ) => Self::new(StatusCode::CONFLICT, "no_capacity", e.to_string()),
            other => Self::internal(other),
        }
    }
}

impl From<crate::app::AppError> for ApiError {
    fn from(e: crate::app::AppError) -> Self {
        use crate::app::AppError;
        match e {
            AppError::Invalid(m) => Self::bad_request(m),
            AppError::AddressNotAllowed(m) => {
                Self::new(StatusCode::BAD_REQUEST, "address_not_allowed", m)
            }
            AppError::Internal(m) => Self::internal(m),
            AppError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        // The audit trail records the code without reading the body.
        response
            .extensions_mut()
            .insert(super::audit_recorder::ErrorCode(self.code));
        response
    }
}
