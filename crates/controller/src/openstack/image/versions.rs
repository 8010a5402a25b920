//! Glance's version discovery: `GET /image`, `/image/` (300, as Glance)
//! and `/image/versions` (200). Clients pick the newest v2 listed.

use crate::http::AppState;
use crate::openstack::catalog::public_base;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

/// The v2 minor versions served: up to 2.5 (Ocata's API, before the
/// interoperable image import of 2.6, which Nubis does not offer).
const VERSIONS: [&str; 6] = ["v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0"];

/// The versions document under `base`.
pub fn document(base: &str) -> Value {
    let values: Vec<Value> = VERSIONS
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id,
                "status": if i == 0 { "CURRENT" } else { "SUPPORTED" },
                "links": [{"rel": "self", "href": format!("{base}/image/v2/")}],
            })
        })
        .collect();
    json!({ "versions": values })
}

/// The versions offered: 300 Multiple Choices at the root, 200 at
/// `/versions`, as Glance answers.
pub async fn versions(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let base = public_base(&state, &headers);
    let status = if uri.path().ends_with("/versions") {
        StatusCode::OK
    } else {
        StatusCode::MULTIPLE_CHOICES
    };
    (status, Json(document(&base)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_current_v2_links_to_the_v2_root() {
        let d = document("http://c:1");
        let v = d["versions"].as_array().unwrap();
        assert_eq!(v.iter().filter(|x| x["status"] == "CURRENT").count(), 1);
        assert_eq!(v[0]["links"][0]["href"], "http://c:1/image/v2/");
    }
}
