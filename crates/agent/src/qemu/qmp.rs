//! A small QMP client: newline-delimited JSON over the instance's unix socket.
//!
//! One task reads the socket: replies go to the command waiting for them (QMP
//! answers commands in order), events go to an event channel, and the socket
//! closing (QEMU exited) closes that channel.

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, Mutex};

/// A QMP failure.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP protocol: {0}")]
    Protocol(String),
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP connection closed (QEMU exited)")]
    Closed,
}

/// An asynchronous event from QEMU, e.g. `SHUTDOWN`, `RESET`, `STOP`.
#[derive(Clone, Debug)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
}

type Pending = Arc<std::sync::Mutex<VecDeque<oneshot::Sender<Value>>>>;

/// A connected, capabilities-negotiated QMP session.
pub struct QmpClient {
    writer: Mutex<OwnedWriteHalf>,
    pending: Pending,
}

impl QmpClient {
    /// Connects, reads the greeting and leaves capabilities-negotiation mode.
    /// Returns the client and the stream of events, which ends when QEMU exits.
    pub async fn connect(
        path: &Path,
    ) -> Result<(Self, mpsc::UnboundedReceiver<QmpEvent>), QmpError> {
        let stream = UnixStream::connect(path).await?;
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = lines.next_line().await?.ok_or(QmpError::Closed)?;
        let greeting: Value = serde_json::from_str(&greeting)
            .map_err(|e| QmpError::Protocol(format!("bad greeting: {e}")))?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "unexpected greeting {greeting}"
            )));
        }
        let pending: Pending = Arc::default();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let reader_pending = pending.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                    tracing::warn!(%line, "unparsable QMP message");
                    continue;
                };
                if let Some(name) = msg.get("event").and_then(Value::as_str) {
                    let data = msg.get("data").cloned().unwrap_or(Value::Null);
                    let _ = events_tx.send(QmpEvent {
                        name: name.to_owned(),
                        data,
                    });
                } else if let Some(waiter) = reader_pending.lock().expect("poisoned").pop_front() {
                    let _ = waiter.send(msg);
                }
            }
            // Dropping the waiters and the event sender tells everyone QEMU is gone.
            reader_pending.lock().expect("poisoned").clear();
        });
        let client = Self {
            writer: Mutex::new(write),
            pending,
        };
        client.execute("qmp_capabilities", None).await?;
        Ok((client, events_rx))
    }

    /// Runs a command and returns its `return` value.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        let (tx, rx) = oneshot::channel();
        {
            // Hold the writer while queueing, so replies match the send order.
            let mut writer = self.writer.lock().await;
            self.pending.lock().expect("poisoned").push_back(tx);
            writer.write_all(line.as_bytes()).await?;
        }
        let reply = rx.await.map_err(|_| QmpError::Closed)?;
        if let Some(ret) = reply.get("return") {
            return Ok(ret.clone());
        }
        let err = reply.get("error").cloned().unwrap_or(Value::Null);
        Err(QmpError::Command {
            command: command.to_owned(),
            class: err["class"].as_str().unwrap_or("unknown").to_owned(),
            desc: err["desc"].as_str().unwrap_or("").to_owned(),
        })
    }

    /// `query-status`: QEMU's run state, e.g. `running`, `paused`, `shutdown`.
    pub async fn run_state(&self) -> Result<String, QmpError> {
        let status = self.execute("query-status", None).await?;
        status
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| QmpError::Protocol(format!("query-status returned {status}")))
    }
}
