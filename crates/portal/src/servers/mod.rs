//! Instances: the list (kept current by polling), the launch form, the
//! detail page with its actions, console log, traffic chart and events.

use crate::Session;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

mod detail;
mod launch;
mod list;

pub use detail::{action, console, detail};
pub use launch::{create, new};
pub use list::{list, poll, row};

pub async fn home(session: Result<Session, Response>) -> Response {
    match session {
        Ok(_) => Redirect::to("/servers").into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

fn first_ip(s: &Value) -> String {
    s["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["ip"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "—".into())
}
