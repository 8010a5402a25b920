//! Version discovery documents: what keystoneauth and openstacksdk read
//! before their first real call, to learn the versioned endpoint and the
//! microversion range.

use super::catalog::public_base;
use super::compute::microversion::{MAX_VERSION, MIN_VERSION};
use crate::http::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

/// The Identity API version served (Keystone's v3 with its 3.14 additions
/// that Nubis uses: none beyond password and token auth).
const IDENTITY_VERSION: &str = "v3.14";

fn identity_v3(base: &str) -> Value {
    json!({
        "id": IDENTITY_VERSION,
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json",
        }],
    })
}

/// `GET /identity`: the versions offered (300 Multiple Choices, as Keystone).
pub async fn identity_versions(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let base = public_base(&state, &headers);
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [identity_v3(&base)]}})),
    )
}

/// `GET /identity/v3`: the v3 version document.
pub async fn identity_version(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = public_base(&state, &headers);
    Json(json!({"version": identity_v3(&base)}))
}

fn compute_v21(base: &str) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": MAX_VERSION.to_string(),
        "min_version": MIN_VERSION.to_string(),
        "updated": "2013-07-23T11:33:21Z",
        "links": [
            {"rel": "self", "href": format!("{base}/compute/v2.1/")},
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
        ],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1",
        }],
    })
}

/// `GET /compute/`: the versions offered (only v2.1; the legacy v2.0 API
/// is not served).
pub async fn compute_versions(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = public_base(&state, &headers);
    Json(json!({"versions": [compute_v21(&base)]}))
}

/// `GET /compute/v2.1`: the v2.1 version document, with the microversion
/// range in `min_version` and `version`.
pub async fn compute_version(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = public_base(&state, &headers);
    Json(json!({"version": compute_v21(&base)}))
}
