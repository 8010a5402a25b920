//! Neutron's error shape: `{"NeutronError": {"type", "message", "detail"}}`.
//! A missing or bad token is answered in Keystone's shape (as
//! keystonemiddleware in front of Neutron does).

use crate::http::audit_recorder::ErrorCode;
use crate::http::error::ApiError;
use crate::openstack::errors::IdentityError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error of the Network API.
#[derive(Debug)]
pub struct NetworkError(pub ApiError);

/// What a handler of the Network API returns.
pub type NetworkResult<T> = Result<T, NetworkError>;

impl From<ApiError> for NetworkError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for NetworkError {
    fn from(e: StoreError) -> Self {
        Self(e.into())
    }
}

impl From<crate::app::AppError> for NetworkError {
    fn from(e: crate::app::AppError) -> Self {
        Self(e.into())
    }
}

/// 404 `type` naming what was not found, as Neutron's `XNotFound`.
pub fn not_found(kind: &'static str, id: &str) -> NetworkError {
    let (code, what) = match kind {
        "network" => ("NetworkNotFound", "Network"),
        "subnet" => ("SubnetNotFound", "Subnet"),
        "port" => ("PortNotFound", "Port"),
        "security_group" => ("SecurityGroupNotFound", "Security group"),
        "security_group_rule" => ("SecurityGroupRuleNotFound", "Security group rule"),
        "floatingip" => ("FloatingIPNotFound", "Floating IP"),
        "extension" => ("ExtensionNotFound", "Extension"),
        _ => ("NotFound", "Resource"),
    };
    NetworkError(ApiError::new(
        StatusCode::NOT_FOUND,
        code,
        format!("{what} {id} could not be found."),
    ))
}

/// 400 with Neutron's type for a malformed request.
pub fn bad_request(message: impl Into<String>) -> NetworkError {
    NetworkError(ApiError::new(
        StatusCode::BAD_REQUEST,
        "HTTPBadRequest",
        message,
    ))
}

/// The `type` of an error: the specific one a handler chose (codes in
/// Neutron's CamelCase), else by status.
fn neutron_type(e: &ApiError) -> &'static str {
    if e.code
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase())
    {
        return e.code;
    }
    match (e.status.as_u16(), e.code) {
        (_, "quota_exceeded") => "OverQuota",
        (400, _) => "HTTPBadRequest",
        (403, _) => "HTTPForbidden",
        (404, _) => "HTTPNotFound",
        (405, _) => "HTTPMethodNotAllowed",
        (409, _) => "Conflict",
        (501, _) => "HTTPNotImplemented",
        (503, _) => "ServiceUnavailable",
        _ => "HTTPInternalServerError",
    }
}

impl IntoResponse for NetworkError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.status == StatusCode::UNAUTHORIZED {
            return IdentityError(e).into_response();
        }
        // Neutron answers an exceeded quota 409 OverQuota.
        let status = if e.code == "quota_exceeded" {
            StatusCode::CONFLICT
        } else {
            e.status
        };
        let body = json!({"NeutronError": {
            "type": neutron_type(&e),
            "message": e.message,
            "detail": "",
        }});
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(e.code));
        response
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
    async fn errors_have_neutrons_shape() {
        let r = not_found("network", "x").into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let b = body_of(r).await;
        assert_eq!(b["NeutronError"]["type"], "NetworkNotFound");
        assert_eq!(
            b["NeutronError"]["message"],
            "Network x could not be found."
        );
        assert_eq!(b["NeutronError"]["detail"], "");
        let r = NetworkError(ApiError::quota_exceeded("full")).into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert_eq!(body_of(r).await["NeutronError"]["type"], "OverQuota");
        let b = body_of(NetworkError(ApiError::conflict("busy")).into_response()).await;
        assert_eq!(b["NeutronError"]["type"], "Conflict");
        let b = body_of(NetworkError(ApiError::unauthorized("no")).into_response()).await;
        assert_eq!(b["error"]["code"], 401);
    }
}
