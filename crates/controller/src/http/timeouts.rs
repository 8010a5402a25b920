//! Bounds on how long a request may take, so a stuck handler or a peer that
//! stops sending cannot hold a connection (and what it holds) forever.
//!
//! Ordinary requests get a total timeout (a tower layer). Three kinds of
//! request cannot have one and get their own bound instead: an image upload
//! may stream gigabytes for as long as bytes keep coming (an idle timeout, in
//! `images.rs`); the console websocket lives as long as its session (it ends
//! with the server or either side); the agents' desired-state long poll waits
//! at most `long_poll` for a change, then answers.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Default total time for an ordinary request. Longer than the agent client
/// timeout (30 s) of the handlers that call an agent, so their own, clearer
/// error comes first.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time an upload may go without receiving a byte before it fails.
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default wait of a desired-state long poll for a change.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(25);

/// The controller's request bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Total time of an ordinary request.
    pub request: Duration,
    /// Longest pause between bytes of an image upload.
    pub upload_idle: Duration,
    /// Longest wait of a desired-state long poll for a change; the whole
    /// long-poll request is bounded by this plus `request`.
    pub long_poll: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: DEFAULT_REQUEST_TIMEOUT,
            upload_idle: DEFAULT_UPLOAD_IDLE_TIMEOUT,
            long_poll: DEFAULT_LONG_POLL,
        }
    }
}

/// Middleware: answers 503 `timeout` (the usual JSON error body) when the
/// rest of the stack takes longer than `limit` to produce a response. Only
/// producing the response head counts: a streamed response body (an image
/// file for an agent) is not cut off.
pub async fn within(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%method, %path, limit_s = limit.as_secs_f64(), "request timed out");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request took longer than {} s; try again",
                    limit.as_secs_f64()
                ),
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    fn app(limit: Duration) -> Router {
        Router::new()
            .route("/fast", get(|| async { "done" }))
            .route(
                "/stuck",
                get(|| async {
                    std::future::pending::<()>().await;
                    "never"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(limit, within))
    }

    async fn call(app: Router, path: &str) -> (StatusCode, serde_json::Value, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_default(),
            text,
        )
    }

    #[tokio::test]
    async fn a_stuck_handler_gets_a_json_503() {
        let (status, body, _) = call(app(Duration::from_millis(50)), "/stuck").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "timeout");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than")));
    }

    #[tokio::test]
    async fn a_quick_handler_is_untouched() {
        let (status, _, text) = call(app(Duration::from_secs(30)), "/fast").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(text, "done");
    }
}
