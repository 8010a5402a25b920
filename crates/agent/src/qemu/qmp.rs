//! A small QMP client: newline-delimited JSON over the instance's unix socket.
//!
//! One task reads the socket: replies go to the command waiting for them (QMP
//! answers commands in order), events go to an event channel, and the socket
//! closing (QEMU exited) closes that channel.
//!
//! Every step has a time limit (`QmpTimeouts`): a wedged QEMU (stopped,
//! deadlocked, starved) never answers, and whoever waits on it must get an
//! error instead of hanging with it.

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
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
    #[error("QMP {what} timed out after {} s: QEMU does not answer", limit.as_secs_f64())]
    Timeout { what: String, limit: Duration },
    #[error("QMP connection unusable: a command was cut off while being sent")]
    Broken,
}

/// How long QEMU may take to answer on its QMP socket.
///
/// QMP is served by QEMU's main loop, not by the guest's vCPUs, and answers
/// in milliseconds; under TCG the main loop competes for the big QEMU lock
/// with busy vCPU threads, and a loaded 2-core host (several TCG guests
/// booting) stretches that to seconds. The limits below leave an order of
/// magnitude above the worst seen, yet report a wedged QEMU (SIGSTOPped,
/// deadlocked) within half a minute.
#[derive(Clone, Copy, Debug)]
pub struct QmpTimeouts {
    /// Connecting to the socket: immediate unless QEMU stopped accepting
    /// and its listen backlog is full.
    pub connect: Duration,
    /// The greeting QEMU sends on accepting a connection.
    pub greeting: Duration,
    /// Each command, from sending it to its reply.
    pub command: Duration,
}

/// QMP socket connect limit (see `QmpTimeouts`).
pub const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// QMP greeting limit (see `QmpTimeouts`).
pub const QMP_GREETING_TIMEOUT: Duration = Duration::from_secs(20);
/// QMP per-command limit (see `QmpTimeouts`).
pub const QMP_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for QmpTimeouts {
    fn default() -> Self {
        Self {
            connect: QMP_CONNECT_TIMEOUT,
            greeting: QMP_GREETING_TIMEOUT,
            command: QMP_COMMAND_TIMEOUT,
        }
    }
}

/// Runs `fut` under `limit`, naming `what` in the timeout error.
async fn limited<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, QmpError>>,
) -> Result<T, QmpError> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(QmpError::Timeout {
            what: what.to_owned(),
            limit,
        })
    })
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
    timeouts: QmpTimeouts,
    /// A send was cut off midway: the byte stream no longer frames commands.
    broken: AtomicBool,
}

impl QmpClient {
    /// Connects, reads the greeting and leaves capabilities-negotiation mode.
    /// Returns the client and the stream of events, which ends when QEMU exits.
    pub async fn connect(
        path: &Path,
    ) -> Result<(Self, mpsc::UnboundedReceiver<QmpEvent>), QmpError> {
        Self::connect_with(path, QmpTimeouts::default()).await
    }

    /// `connect` with explicit time limits.
    pub async fn connect_with(
        path: &Path,
        timeouts: QmpTimeouts,
    ) -> Result<(Self, mpsc::UnboundedReceiver<QmpEvent>), QmpError> {
        // QEMU binds its socket a moment before it listens on it: a connect
        // in between is refused, so that is retried within the limit.
        let stream = limited("connect", timeouts.connect, async {
            loop {
                match UnixStream::connect(path).await {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    other => return Ok(other?),
                }
            }
        })
        .await?;
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = limited("greeting", timeouts.greeting, async {
            lines.next_line().await?.ok_or(QmpError::Closed)
        })
        .await?;
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
            timeouts,
            broken: AtomicBool::new(false),
        };
        client.execute("qmp_capabilities", None).await?;
        Ok((client, events_rx))
    }

    /// Runs a command and returns its `return` value; fails after the
    /// command time limit if QEMU does not answer.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let what = format!("command {command}");
        limited(
            &what,
            self.timeouts.command,
            self.exchange(command, arguments),
        )
        .await
    }

    async fn exchange(&self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        let (tx, rx) = oneshot::channel();
        {
            // Hold the writer while queueing, so replies match the send order.
            // A reply that comes after its command timed out still takes its
            // place in the queue (its receiver is gone), so later replies
            // still reach their own commands.
            let mut writer = self.writer.lock().await;
            if self.broken.load(Ordering::Relaxed) {
                return Err(QmpError::Broken);
            }
            self.pending.lock().expect("poisoned").push_back(tx);
            // Cut off midway (timeout), a partial line would garble every
            // later command: until the write completes, count it as broken.
            self.broken.store(true, Ordering::Relaxed);
            writer.write_all(line.as_bytes()).await?;
            self.broken.store(false, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    fn short() -> QmpTimeouts {
        QmpTimeouts {
            connect: Duration::from_secs(5),
            greeting: Duration::from_millis(300),
            command: Duration::from_millis(300),
        }
    }

    const GREETING: &str = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n";

    /// A fake QEMU on a socket: greets (or not), then answers the first
    /// `answers` commands with `{"return": {"status": "running"}}` and
    /// swallows the rest, as a wedged QEMU would.
    fn fake_qemu(dir: &Path, greet: bool, answers: usize) -> std::path::PathBuf {
        let path = dir.join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            if greet {
                write.write_all(GREETING.as_bytes()).await.unwrap();
            }
            let mut lines = BufReader::new(read).lines();
            let mut answered = 0;
            while let Ok(Some(_)) = lines.next_line().await {
                if answered < answers {
                    answered += 1;
                    let reply = "{\"return\": {\"status\": \"running\"}}\n";
                    write.write_all(reply.as_bytes()).await.unwrap();
                }
            }
        });
        path
    }

    #[tokio::test]
    async fn a_socket_that_never_greets_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_qemu(dir.path(), false, 0);
        let err = QmpClient::connect_with(&path, short()).await.err().unwrap();
        assert!(
            matches!(&err, QmpError::Timeout { what, .. } if what == "greeting"),
            "{err}"
        );
        assert!(err.to_string().contains("timed out"), "{err}");
    }

    #[tokio::test]
    async fn a_command_that_is_never_answered_times_out() {
        let dir = tempfile::tempdir().unwrap();
        // Answers qmp_capabilities and one query-status, then nothing.
        let path = fake_qemu(dir.path(), true, 2);
        let (qmp, _events) = QmpClient::connect_with(&path, short()).await.unwrap();
        // Positive control: an answered command works on this path.
        assert_eq!(qmp.run_state().await.unwrap(), "running");
        let err = qmp.run_state().await.unwrap_err();
        assert!(
            matches!(&err, QmpError::Timeout { what, .. } if what == "command query-status"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("QMP command query-status timed out after 0.3 s"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_socket_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let err = QmpClient::connect_with(&dir.path().join("none"), short())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, QmpError::Io(_)), "{err}");
    }
}
