//! Neutron's version document and its extensions (only those honoured).

use super::error::{not_found, NetworkResult};
use crate::http::AppState;
use crate::openstack::catalog::public_base;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

/// The extensions Nubis honours: (alias, name, description).
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    (
        "security-group",
        "security-group",
        "The security groups extension.",
    ),
    (
        "external-net",
        "Neutron external network",
        "Adds external network attribute to network resource (Nubis: its floating-IP pools).",
    ),
    (
        "project-id",
        "project_id field enabled",
        "Extension that indicates that project_id field is enabled.",
    ),
];

fn extension(alias: &str, name: &str, description: &str) -> Value {
    json!({
        "alias": alias,
        "name": name,
        "description": description,
        "updated": "2013-01-01T00:00:00-00:00",
        "links": [],
    })
}

/// `GET /network`: one version, v2.0 (answered 200 as Neutron does).
pub async fn versions(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = public_base(&state, &headers);
    Json(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{base}/network/v2.0/")}],
    }]}))
}

/// `GET /network/v2.0`: the collections served.
pub async fn resources(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = public_base(&state, &headers);
    let resources: Vec<Value> = [
        ("network", "networks"),
        ("subnet", "subnets"),
        ("port", "ports"),
        ("security_group", "security-groups"),
        ("security_group_rule", "security-group-rules"),
        ("floatingip", "floatingips"),
    ]
    .iter()
    .map(|(name, collection)| {
        json!({"name": name, "collection": collection, "links": [
            {"rel": "self", "href": format!("{base}/network/v2.0/{collection}")}
        ]})
    })
    .collect();
    Json(json!({ "resources": resources }))
}

/// `GET /v2.0/extensions`.
pub async fn list(_caller: crate::openstack::network::Caller) -> Json<Value> {
    let all: Vec<Value> = EXTENSIONS
        .iter()
        .map(|(a, n, d)| extension(a, n, d))
        .collect();
    Json(json!({ "extensions": all }))
}

/// `GET /v2.0/extensions/{alias}`: 404 for any Nubis does not honour.
pub async fn show(
    _caller: crate::openstack::network::Caller,
    Path(alias): Path<String>,
) -> NetworkResult<(StatusCode, Json<Value>)> {
    EXTENSIONS
        .iter()
        .find(|(a, _, _)| *a == alias)
        .map(|(a, n, d)| {
            (
                StatusCode::OK,
                Json(json!({"extension": extension(a, n, d)})),
            )
        })
        .ok_or_else(|| not_found("extension", &alias))
}
