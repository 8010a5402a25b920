//! Request bodies of the Network API: `{"<resource>": {...}}`, with
//! Neutron's 400 for malformed JSON and unknown attributes.

use super::error::{bad_request, NetworkError};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

/// A JSON object body.
pub struct Body(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = NetworkError;

    async fn from_request(req: Request, state: &S) -> Result<Self, NetworkError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| bad_request(e.body_text()))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(Self(m)),
            Ok(_) => Err(bad_request("The request body must be a JSON object.")),
            Err(e) => Err(bad_request(format!("Malformed JSON in request body: {e}"))),
        }
    }
}

impl Body {
    /// The object under `key`, refusing attributes outside `allowed`.
    pub fn resource(self, key: &str, allowed: &[&str]) -> Result<Map<String, Value>, NetworkError> {
        let Some(Value::Object(inner)) = self.0.get(key).cloned() else {
            return Err(bad_request(format!(
                "Resource body required: {{\"{key}\": {{...}}}}"
            )));
        };
        let unknown: Vec<&str> = inner
            .keys()
            .map(String::as_str)
            .filter(|k| !allowed.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(bad_request(format!(
                "Unrecognized attribute(s) '{}'",
                unknown.join(", ")
            )));
        }
        Ok(inner)
    }
}

/// A string attribute (absent: `None`; not a string: 400).
pub fn string<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, NetworkError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad_request(format!(
            "Invalid input for {key}. Reason: '{other}' is not a valid string."
        ))),
    }
}

/// An attribute Nubis supports only with one value (e.g. `admin_state_up`
/// true): absent or that value passes, anything else is 400 naming why.
pub fn only(
    m: &Map<String, Value>,
    key: &str,
    allowed: &Value,
    why: &str,
) -> Result<(), NetworkError> {
    match m.get(key) {
        None => Ok(()),
        Some(v) if v == allowed => Ok(()),
        Some(v) => Err(bad_request(format!(
            "Invalid input for {key}: {v} is not supported ({why})."
        ))),
    }
}

/// The owner attributes (`project_id`, `tenant_id`): absent or the
/// caller's own project.
pub fn own_project(m: &Map<String, Value>, project: &str) -> Result<(), NetworkError> {
    for key in ["project_id", "tenant_id"] {
        if let Some(p) = string(m, key)? {
            if p != project {
                return Err(bad_request(format!(
                    "{key} must be the caller's own project ({project})"
                )));
            }
        }
    }
    Ok(())
}
