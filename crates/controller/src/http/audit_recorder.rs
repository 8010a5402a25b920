//! The middleware that records every state-changing call of the API router
//! in the audit trail, after its response is made.
//!
//! Before the handler: the call is classified (action, object), given a
//! request id, and an [`AuditSlot`] goes into the request's extensions for
//! the authentication extractors to fill. After it: status, outcome, the
//! API error code (from the response's extensions, never its message) and,
//! for a create, the new object's `id` from the response body. The record
//! is queued to the audit writer; the request never fails on its account.

use super::AppState;
use crate::audit::actions::{self, Classified};
use crate::audit::AuditSlot;
use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_TYPE, USER_AGENT};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use nubis_api::audit::{AuditEvent, Initiator, Outcome};
use std::collections::HashMap;
use std::net::SocketAddr;

/// The response header naming the request id kept in the trail.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest response body read for a new object's id (creates answer the
/// object itself, a few KiB).
const MAX_CREATED_BODY: u64 = 256 * 1024;

/// Longest user agent kept.
const MAX_USER_AGENT: usize = 200;

/// The API error code of an error response, put in its extensions by
/// `ApiError`, so the recorder need not read error bodies.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

/// Records the call if it changes state (see `audit::actions`).
pub async fn record(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(call) = actions::classify(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let source_address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical().to_string());
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_USER_AGENT).collect::<String>());
    let method = req.method().as_str().to_owned();
    let path = actions::recorded_path(req.uri().path());

    let mut response = next.run(req).await;

    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let status = response.status().as_u16();
    let outcome = Outcome::of_status(status);
    if call.only_failures && outcome == Outcome::Success {
        return response;
    }
    let error = response
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.0.to_owned());
    let Classified {
        action,
        object_type,
        mut object_id,
        ..
    } = call;
    if object_id.is_none() && outcome == Outcome::Success {
        let (r, created) = created_id(response).await;
        response = r;
        object_id = created;
    }
    let who = slot.identity();
    let initiator = if who.agent {
        Initiator::Agent
    } else if who.user.is_some() {
        Initiator::User
    } else {
        Initiator::Anonymous
    };
    let event = AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        time: chrono::Utc::now(),
        request_id,
        initiator,
        user: who.user,
        user_name: who.user_name,
        project: who.project,
        host: who.host,
        source_address,
        user_agent,
        action,
        method,
        path,
        object_type,
        object_id,
        status,
        outcome,
        error,
    };
    state.audit.record(event).await;
    response
}

/// The `id` of the object a JSON response holds, reading the body only
/// when it is small and whole; the response is given back intact.
async fn created_id(response: Response) -> (Response, Option<String>) {
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_CREATED_BODY);
    if !json || !small {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, MAX_CREATED_BODY as usize).await {
        Ok(bytes) => {
            // `{"id": ...}` (/v1), or one wrapped object (`{"flavor":
            // {"id": ...}}`, the OpenStack APIs).
            let id = serde_json::from_slice::<IdOnly>(&bytes)
                .ok()
                .and_then(|v| v.id)
                .or_else(|| {
                    let wrapped = serde_json::from_slice::<HashMap<String, IdOnly>>(&bytes).ok()?;
                    let mut values = wrapped.into_values();
                    match (values.next(), values.next()) {
                        (Some(only), None) => only.id,
                        _ => None,
                    }
                })
                .and_then(|v| match v {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
            (Response::from_parts(parts, Body::from(bytes)), id)
        }
        Err(e) => {
            // A body made in memory does not fail; if one did, the client
            // would have had it fail too.
            tracing::warn!(error = %e, "cannot read a response for the audit trail");
            (Response::from_parts(parts, Body::empty()), None)
        }
    }
}

/// Only the top-level `id` of a response; everything else (a login's
/// token, a key pair's private key) is skipped unread.
#[derive(serde::Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<serde_json::Value>,
}
