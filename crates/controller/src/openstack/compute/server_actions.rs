//! `POST /servers/{id}/action` and the read-only sub-resources (`ips`):
//! power actions, reboot, console output and the noVNC console, each
//! through the `/v1` handler that does the same, after Nova's state checks
//! (`os-start`/`os-stop` in the wrong state: 409 as Nova).

use super::server_view::{self, nova_state};
use super::servers::find;
use super::ComputeResult;
use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, Caller};
use crate::http::AppState;
use crate::openstack::auth::OsCaller;
use crate::openstack::errors::{not_implemented, ComputeError};
use crate::store::ServerRecord;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// Nova actions Nubis does not offer: 501, never a wrong success.
const NOT_OFFERED: &[&str] = &[
    "createImage",
    "createBackup",
    "resize",
    "confirmResize",
    "revertResize",
    "rebuild",
    "changePassword",
    "pause",
    "unpause",
    "suspend",
    "resume",
    "lock",
    "unlock",
    "shelve",
    "shelveOffload",
    "unshelve",
    "rescue",
    "unrescue",
    "migrate",
    "os-migrateLive",
    "evacuate",
    "addFloatingIp",
    "removeFloatingIp",
    "addSecurityGroup",
    "removeSecurityGroup",
    "addFixedIp",
    "removeFixedIp",
    "os-resetState",
    "forceDelete",
    "restore",
    "trigger_crash_dump",
    "injectNetworkInfo",
    "resetNetwork",
    "os-resetPassword",
];

fn bad(message: impl Into<String>) -> ComputeError {
    ComputeError(ApiError::bad_request(message))
}

/// Nova's 409 for an action in the wrong state.
fn wrong_state(action: &str, r: &ServerRecord) -> ComputeError {
    let state = nova_state(r.status(), r.power);
    ComputeError(ApiError::conflict(format!(
        "Cannot '{action}' instance {} while it is in vm_state {}{}",
        r.id,
        state.vm_state,
        state
            .task_state
            .map(|t| format!(" and task_state {t}"))
            .unwrap_or_default()
    )))
}

/// `POST /servers/{id}/action`: `{"<action>": {...}}`.
pub async fn action(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> ComputeResult<Response> {
    let body: Map<String, Value> = super::parse_body(&body)?;
    let (name, args) = match body.len() {
        1 => body.into_iter().next().expect("one entry"),
        _ => return Err(bad("Malformed request body: one action is expected")),
    };
    let record = find(&state, &caller, &id).await?;
    let accepted = || Ok(StatusCode::ACCEPTED.into_response());
    match name.as_str() {
        "os-start" => {
            let s = nova_state(record.status(), record.power);
            if (s.status, s.task_state) != ("SHUTOFF", None) {
                return Err(wrong_state("start", &record));
            }
            let _ = crate::http::servers::start(State(state), caller, ApiPath(record.id)).await?;
            accepted()
        }
        "os-stop" => {
            let s = nova_state(record.status(), record.power);
            if !matches!((s.status, s.task_state), ("ACTIVE" | "ERROR", None)) {
                return Err(wrong_state("stop", &record));
            }
            let _ = crate::http::servers::stop(State(state), caller, ApiPath(record.id)).await?;
            accepted()
        }
        "reboot" => {
            let kind = args.get("type").and_then(Value::as_str).unwrap_or("");
            if !matches!(kind, "SOFT" | "HARD") {
                return Err(bad(format!(
                    "Invalid input for field/attribute type. Value: {kind}. Must be SOFT or HARD"
                )));
            }
            // Nubis's reboot is a reset: SOFT is served as HARD.
            let _ = crate::http::servers::reboot(State(state), caller, ApiPath(record.id)).await?;
            accepted()
        }
        "os-getConsoleOutput" => console_output(state, caller, record, &args).await,
        "os-getVNCConsole" => vnc_console(state, caller, record, &args).await,
        "os-getSPICEConsole" | "os-getRDPConsole" | "os-getSerialConsole" => Err(bad(format!(
            "Unavailable console type: {name} (Nubis offers noVNC: os-getVNCConsole)"
        ))),
        "createImage" => Err(ComputeError(not_implemented(
            "createImage (Nubis has no server snapshots yet)",
        ))),
        other if NOT_OFFERED.contains(&other) => Err(ComputeError(not_implemented(&format!(
            "The server action {other}"
        )))),
        other => Err(bad(format!("There is no such action: {other}"))),
    }
}

/// The last `length` lines of the serial log (all without `length`).
async fn console_output(
    state: AppState,
    caller: Caller,
    record: ServerRecord,
    args: &Value,
) -> ComputeResult<Response> {
    let length = match args.get("length") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => Some(
            s.parse::<i64>()
                .map_err(|_| bad(format!("Invalid length: {s}")))?,
        ),
        Some(other) => return Err(bad(format!("Invalid length: {other}"))),
    };
    let log = crate::http::servers::console_log(State(state), caller, ApiPath(record.id)).await?;
    let output = match length {
        None | Some(-1) => log,
        Some(n) if n < 0 => return Err(bad(format!("Invalid length: {n}"))),
        Some(n) => {
            let lines: Vec<&str> = log.split_inclusive('\n').collect();
            lines[lines.len().saturating_sub(n as usize)..].concat()
        }
    };
    Ok(Json(json!({ "output": output })).into_response())
}

/// `{"console": {"type": "novnc", "url": ...}}`: the portal's noVNC page
/// with a single-use token, issued as `POST /v1/servers/{id}/console`.
async fn vnc_console(
    state: AppState,
    caller: Caller,
    record: ServerRecord,
    args: &Value,
) -> ComputeResult<Response> {
    let kind = args.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "novnc" {
        return Err(bad(format!(
            "Invalid console type {kind}: Nubis offers novnc"
        )));
    }
    let (_, _, Json(access)) =
        crate::http::console::create(State(state), caller, ApiPath(record.id)).await?;
    let mut response =
        Json(json!({"console": {"type": "novnc", "url": access.url}})).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// `GET /servers/{id}/ips`: `{"addresses": {...}}`.
pub async fn ips(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> ComputeResult<Json<Value>> {
    let addresses = addresses_of(&state, &caller, &id).await?;
    Ok(Json(json!({ "addresses": addresses })))
}

/// `GET /servers/{id}/ips/{network}`: `{"<network>": [...]}`.
pub async fn ips_of_network(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path((id, network)): Path<(String, String)>,
) -> ComputeResult<Json<Value>> {
    let addresses = addresses_of(&state, &caller, &id).await?;
    let list = addresses.get(&network).cloned().ok_or_else(|| {
        ComputeError(ApiError::not_found(&format!(
            "Instance {id} has no network {network}"
        )))
    })?;
    Ok(Json(json!({ network: list })))
}

async fn addresses_of(state: &AppState, caller: &Caller, id: &str) -> ComputeResult<Value> {
    let record = find(state, caller, id).await?;
    let floating = state.store.list_floating_ips(caller.user.project).await?;
    let server = crate::http::servers::present(state, vec![record])
        .await?
        .remove(0);
    Ok(server_view::addresses(&server, &floating))
}
