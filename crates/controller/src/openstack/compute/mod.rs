//! Compute v2.1 (Nova): flavors, key pairs, limits, quota sets, servers
//! (with their actions) and server groups,
//! each calling the same store and domain code as its `/v1` twin.

pub mod flavors;
pub mod keypairs;
pub mod microversion;
pub mod quotas;
pub mod server_actions;
pub mod server_create;
pub mod server_groups;
pub mod server_view;
pub mod servers;

use super::errors::ComputeError;
use serde_json::{json, Value};

/// Result of a compute handler.
pub type ComputeResult<T> = Result<T, ComputeError>;

/// Nova's `links` of an object: `self` (versioned) and `bookmark`.
pub fn links(base: &str, collection: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/compute/v2.1/{collection}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/compute/{collection}/{id}")},
    ])
}

/// A JSON request body, or Nova's 400 with serde's reason.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ComputeResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        ComputeError(crate::http::error::ApiError::bad_request(format!(
            "Invalid input for the request body: {e}"
        )))
    })
}
