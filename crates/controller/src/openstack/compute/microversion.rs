//! Compute microversions: which one a request asks for
//! (`OpenStack-API-Version: compute X.Y` or the older
//! `X-OpenStack-Nova-API-Version: X.Y`), refused with 406 when outside what
//! Nubis serves, and named in every response as Nova does.
//!
//! Nubis serves 2.1 only: clients negotiate down to it (openstacksdk and
//! novaclient take the highest both sides know). Raising `MAX_VERSION`
//! means honouring every change up to it.

use super::super::errors::ComputeError;
use crate::http::error::ApiError;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// A compute API microversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion {
    pub major: u32,
    pub minor: u32,
}

impl std::fmt::Display for Microversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The lowest microversion served.
pub const MIN_VERSION: Microversion = Microversion { major: 2, minor: 1 };
/// The highest microversion served.
pub const MAX_VERSION: Microversion = Microversion { major: 2, minor: 1 };

const HEADER: &str = "openstack-api-version";
const LEGACY_HEADER: &str = "x-openstack-nova-api-version";

/// The microversion `headers` ask for: the minimum when none is asked,
/// the maximum for `latest`.
pub fn requested(headers: &HeaderMap) -> Result<Microversion, ApiError> {
    let asked = headers
        .get_all(HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let mut words = part.split_whitespace();
            match (words.next(), words.next()) {
                (Some(service), Some(version)) if service.eq_ignore_ascii_case("compute") => {
                    Some(version.to_owned())
                }
                _ => None,
            }
        })
        .or_else(|| {
            headers
                .get(LEGACY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
        });
    let Some(asked) = asked else {
        return Ok(MIN_VERSION);
    };
    if asked.eq_ignore_ascii_case("latest") {
        return Ok(MAX_VERSION);
    }
    let version = asked
        .split_once('.')
        .and_then(|(a, b)| Some(Microversion {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        }))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "API Version String {asked} is of invalid format. Must be of format MajorNum.MinorNum."
            ))
        })?;
    if version < MIN_VERSION || version > MAX_VERSION {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "version_not_supported",
            format!(
                "Version {version} is not supported by the API. Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}."
            ),
        ));
    }
    Ok(version)
}

/// Middleware of the compute API: refuses versions not served, and names
/// the version in the response.
pub async fn negotiate(req: Request, next: Next) -> Response {
    let version = match requested(req.headers()) {
        Ok(v) => v,
        Err(e) => return ComputeError(e).into_response(),
    };
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("compute {version}")) {
        h.insert(HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        h.insert(LEGACY_HEADER, v);
    }
    h.insert(
        axum::http::header::VARY,
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn versions_are_read_from_either_header() {
        assert_eq!(requested(&HeaderMap::new()).unwrap(), MIN_VERSION);
        assert_eq!(
            requested(&with(HEADER, "compute 2.1")).unwrap(),
            MIN_VERSION
        );
        assert_eq!(
            requested(&with(HEADER, "compute latest")).unwrap(),
            MAX_VERSION
        );
        assert_eq!(requested(&with(LEGACY_HEADER, "2.1")).unwrap(), MIN_VERSION);
        // Another service's version is not the compute one.
        assert_eq!(
            requested(&with(HEADER, "volume 3.70")).unwrap(),
            MIN_VERSION
        );
    }

    #[test]
    fn versions_outside_the_range_or_malformed_are_refused() {
        let e = requested(&with(HEADER, "compute 2.95")).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
        let e = requested(&with(LEGACY_HEADER, "2.0")).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
        let e = requested(&with(HEADER, "compute two")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
