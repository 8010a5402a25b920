//! Health checks for load balancers and service managers, outside `/v1` and
//! its authentication: `GET /healthz` (the process answers) and `GET /readyz`
//! (the state store answers, every host reported recently, every background
//! task runs).

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use nubis_api::agent::Host;
use nubis_api::HostId;
use nubis_supervise::TaskStatus;
use serde::Serialize;
use std::time::Duration;

/// Default age after which a host's last report makes the cloud not ready.
/// Agents report at least every `--meter-interval` (10 s) and long-poll
/// every 25 s, so this is several missed heartbeats.
pub const DEFAULT_STALE_REPORT_AFTER: Duration = Duration::from_secs(90);
/// How long `/readyz` waits for the state store before calling it unreachable.
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What `/readyz` requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// A host whose last report (or long poll) is older than this is stale.
    pub stale_report_after: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            stale_report_after: DEFAULT_STALE_REPORT_AFTER,
        }
    }
}

/// The routes `/healthz` and `/readyz`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `GET /healthz`: 200 `{"status":"ok"}` whenever the process serves HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize, PartialEq)]
pub struct ReadinessReport {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Why it is not ready; empty when ready.
    pub reasons: Vec<String>,
    /// `ok` or `unreachable`.
    pub store: &'static str,
    /// Every registered host and the age of its last report.
    pub hosts: Vec<HostAge>,
    /// Every supervised background task and its state.
    pub tasks: Vec<TaskStatus>,
}

/// A host's last report and its age.
#[derive(Debug, Serialize, PartialEq)]
pub struct HostAge {
    pub id: HostId,
    pub name: String,
    pub last_seen: DateTime<Utc>,
    /// Whole seconds since `last_seen`.
    pub report_age_seconds: i64,
    pub stale: bool,
}

impl ReadinessReport {
    /// Judges readiness from what was observed.
    pub fn assess(
        hosts: Result<Vec<Host>, String>,
        tasks: Vec<TaskStatus>,
        now: DateTime<Utc>,
        settings: Readiness,
    ) -> Self {
        let mut reasons = Vec::new();
        let (store, hosts) = match hosts {
            Ok(hosts) => ("ok", hosts),
            Err(e) => {
                reasons.push(format!("the state store is unreachable: {e}"));
                ("unreachable", Vec::new())
            }
        };
        let limit = settings.stale_report_after.as_secs() as i64;
        let hosts: Vec<HostAge> = hosts
            .into_iter()
            .map(|h| {
                let age = now.signed_duration_since(h.last_seen).num_seconds().max(0);
                HostAge {
                    id: h.id,
                    name: h.name,
                    last_seen: h.last_seen,
                    report_age_seconds: age,
                    stale: age > limit,
                }
            })
            .collect();
        for h in hosts.iter().filter(|h| h.stale) {
            reasons.push(format!(
                "host '{}' last reported {} s ago (limit {limit} s)",
                h.name, h.report_age_seconds
            ));
        }
        for t in &tasks {
            match &t.state {
                nubis_supervise::TaskState::Running => {}
                nubis_supervise::TaskState::Restarting {
                    failures,
                    last_error,
                } => reasons.push(format!(
                    "background task '{}' is restarting after {failures} failure(s): {last_error}",
                    t.name
                )),
                nubis_supervise::TaskState::Failed { last_error } => {
                    reasons.push(format!("background task '{}' failed: {last_error}", t.name))
                }
            }
        }
        Self {
            status: if reasons.is_empty() {
                "ready"
            } else {
                "not_ready"
            },
            reasons,
            store,
            hosts,
            tasks,
        }
    }
}

/// `GET /readyz`: 200 when ready, else 503; both with a [`ReadinessReport`].
pub async fn readyz(State(state): State<AppState>) -> Response {
    // One cheap query shows the store answers and gives every host's last report.
    let hosts = match tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.list_hosts()).await {
        Ok(Ok(hosts)) => Ok(hosts),
        Ok(Err(e)) => {
            // Store errors may name its host or files: logged, not shown.
            tracing::warn!(error = %e, "readiness: the state store failed");
            Err("it answered with an error (see the controller log)".into())
        }
        Err(_) => Err(format!(
            "no answer within {} s",
            STORE_CHECK_TIMEOUT.as_secs()
        )),
    };
    let report =
        ReadinessReport::assess(hosts, state.tasks.snapshot(), Utc::now(), state.readiness);
    if !report.reasons.is_empty() {
        tracing::warn!(reasons = ?report.reasons, "not ready");
    }
    let status = if report.reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubis_api::agent::Accelerator;
    use nubis_supervise::TaskState;

    fn host(name: &str, seen_secs_ago: i64, now: DateTime<Utc>) -> Host {
        Host {
            id: HostId::new(),
            name: name.into(),
            url: "http://127.0.0.1:1".into(),
            vcpus: 1,
            memory_mib: 1024,
            disk_gib: 10,
            accel: Accelerator::Tcg,
            last_seen: now - chrono::Duration::seconds(seen_secs_ago),
            cpu_model: String::new(),
            enabled: true,
            disabled_reason: None,
        }
    }

    fn running(name: &str) -> TaskStatus {
        TaskStatus {
            name: name.into(),
            state: TaskState::Running,
        }
    }

    const SETTINGS: Readiness = Readiness {
        stale_report_after: Duration::from_secs(90),
    };

    #[test]
    fn ready_when_the_store_answers_hosts_are_fresh_and_tasks_run() {
        let now = Utc::now();
        let r = ReadinessReport::assess(
            Ok(vec![host("a", 5, now)]),
            vec![running("terms keeper")],
            now,
            SETTINGS,
        );
        assert_eq!(r.status, "ready");
        assert!(r.reasons.is_empty(), "{:?}", r.reasons);
        assert_eq!(r.hosts[0].report_age_seconds, 5);
        assert!(!r.hosts[0].stale);
    }

    #[test]
    fn an_unreachable_store_is_not_ready() {
        let r = ReadinessReport::assess(
            Err("connection refused".into()),
            vec![running("terms keeper")],
            Utc::now(),
            SETTINGS,
        );
        assert_eq!(r.status, "not_ready");
        assert_eq!(r.store, "unreachable");
        assert!(
            r.reasons[0].contains("connection refused"),
            "{:?}",
            r.reasons
        );
    }

    #[test]
    fn a_stale_host_and_a_stopped_task_are_reasons() {
        let now = Utc::now();
        let r = ReadinessReport::assess(
            Ok(vec![host("fresh", 1, now), host("old", 91, now)]),
            vec![
                running("api"),
                TaskStatus {
                    name: "terms keeper".into(),
                    state: TaskState::Restarting {
                        failures: 2,
                        last_error: "boom".into(),
                    },
                },
            ],
            now,
            SETTINGS,
        );
        assert_eq!(r.status, "not_ready");
        assert_eq!(r.reasons.len(), 2, "{:?}", r.reasons);
        assert!(r.reasons[0].contains("'old'"));
        assert!(r.reasons[1].contains("'terms keeper'") && r.reasons[1].contains("boom"));
    }
}
