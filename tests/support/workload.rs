//! The workload of the fault-injection test: create/stop/start/reboot/
//! delete through the API, and a model of what was last asked of each
//! server (an answer lost to a kill leaves either outcome possible).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// At most this many servers exist (as far as the test knows) at once.
pub const MAX_SERVERS: usize = 3;
/// How long one API call may take before its outcome counts as unknown.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The controller's API inside the test's namespace.
pub const API: &str = "http://127.0.0.1:8780";
/// The agent protocol of the controller (its default `--cluster-listen`).
pub const CLUSTER: &str = "https://127.0.0.1:8781";

/// What the test last asked of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Running,
    Stopped,
    /// A start or stop whose answer was lost: either state is right.
    RunningOrStopped,
    Gone,
    /// A delete whose answer was lost.
    GoneOrAny,
}

/// How an API call ended.
pub enum Outcome {
    Answered(StatusCode, Value),
    /// Never reached the server (connection refused): nothing changed.
    NotSent,
    /// Sent, but no answer: it may or may not have been carried out.
    Lost,
}

/// What was asked of each server, and counts of how the calls ended.
#[derive(Default)]
pub struct Model {
    pub servers: BTreeMap<String, Want>,
    pub names: u64,
    /// Figures for the end.
    pub accepted: u64,
    pub refused: u64,
    pub not_sent: u64,
    pub lost: u64,
    /// 5xx answers: always a failure.
    pub server_errors: Vec<String>,
}

/// An operation of a burst.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Create,
    Stop,
    Start,
    Reboot,
    Delete,
}

/// The user API, as the logged-in test user.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub token: String,
}

impl Api {
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Outcome {
        let mut req = self
            .http
            .request(method, format!("{API}{path}"))
            .bearer_auth(&self.token)
            .timeout(CALL_TIMEOUT);
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                Outcome::Answered(status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(e) if e.is_connect() => Outcome::NotSent,
            Err(_) => Outcome::Lost,
        }
    }
}

/// Sends one operation (on the server that `pick` selects) and records what
/// it asked for.
pub async fn perform(api: &Api, model: &Mutex<Model>, op: Op, pick: u64) {
    let (method, path, body, target) = {
        let mut m = model.lock().unwrap();
        let alive: Vec<String> = m
            .servers
            .iter()
            .filter(|(_, w)| **w != Want::Gone)
            .map(|(id, _)| id.clone())
            .collect();
        let op = match op {
            Op::Create if alive.len() >= MAX_SERVERS => Op::Delete,
            _ if alive.is_empty() => Op::Create,
            op => op,
        };
        if let Op::Create = op {
            m.names += 1;
            let body = json!({"name": format!("f{}", m.names), "image": "tiny",
                              "vcpus": 1, "memory_mib": 96, "disk_gib": 1});
            (Method::POST, "/v1/servers".to_owned(), Some(body), None)
        } else {
            let id = alive[(pick % alive.len() as u64) as usize].clone();
            let (method, path) = match op {
                Op::Stop => (Method::POST, format!("/v1/servers/{id}/stop")),
                Op::Start => (Method::POST, format!("/v1/servers/{id}/start")),
                Op::Reboot => (Method::POST, format!("/v1/servers/{id}/reboot")),
                _ => (Method::DELETE, format!("/v1/servers/{id}")),
            };
            (method, path, None, Some((id, op)))
        }
    };
    let outcome = api.call(method.clone(), &path, body).await;
    let mut m = model.lock().unwrap();
    match outcome {
        Outcome::NotSent => m.not_sent += 1,
        Outcome::Answered(status, answer) if status.is_server_error() => {
            m.server_errors
                .push(format!("{method} {path}: {status} {answer}"));
        }
        Outcome::Answered(status, _) if status.is_client_error() => m.refused += 1,
        Outcome::Answered(_, answer) => {
            m.accepted += 1;
            let want = match &target {
                None => {
                    let id = answer["id"].as_str().expect("created server id");
                    m.servers.insert(id.to_owned(), Want::Running);
                    return;
                }
                Some((_, Op::Stop)) => Want::Stopped,
                Some((_, Op::Start | Op::Reboot)) => Want::Running,
                Some(_) => Want::Gone,
            };
            let (id, _) = target.unwrap();
            m.servers.insert(id, want);
        }
        Outcome::Lost => {
            m.lost += 1;
            // A lost create shows up in the server list and is adopted then.
            if let Some((id, op)) = target {
                let old = m.servers[&id];
                let want = match op {
                    Op::Delete => Want::GoneOrAny,
                    Op::Reboot => old,
                    _ if old == Want::GoneOrAny => Want::GoneOrAny,
                    _ => Want::RunningOrStopped,
                };
                m.servers.insert(id, want);
            }
        }
    }
}
