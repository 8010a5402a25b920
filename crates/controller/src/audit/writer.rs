//! The audit writer: records go through a bounded queue to one task that
//! writes them in batches, so a request never waits for the database on
//! their account (only for queue space, if the writer falls far behind) and
//! a failed write never fails a request.

use crate::store::Store;
use nubis_api::audit::AuditEvent;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Records waiting at most; beyond this, requests wait for room rather than
/// records being dropped.
const QUEUE: usize = 4096;
/// Records written in one transaction at most.
const MAX_BATCH: usize = 256;
/// How long the writer gathers records before it writes them.
const BATCH_WINDOW: Duration = Duration::from_millis(25);
/// Pauses before the second and third attempt of a failed batch.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

enum Message {
    Record(Box<AuditEvent>),
    /// Answered once everything queued before it is written (or given up).
    Flush(oneshot::Sender<()>),
}

/// The handle requests record through; cloning shares the writer.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
}

impl AuditLog {
    /// Starts the writer task on the current runtime. It ends when the
    /// last handle is dropped, after writing what is queued.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store, rx));
        Self { tx }
    }

    /// Queues a record. Never fails the caller: a writer that is gone is
    /// logged.
    pub async fn record(&self, event: AuditEvent) {
        let (action, request_id) = (event.action.clone(), event.request_id.clone());
        if self
            .tx
            .send(Message::Record(Box::new(event)))
            .await
            .is_err()
        {
            tracing::error!(%action, %request_id, "audit writer is gone; record lost");
        }
    }

    /// Waits until every record queued so far is written, so that a read of
    /// the trail sees this controller's own calls.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::new();
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        // Gather what comes within the window (or until a flush is asked
        // for): one transaction then carries the records of many calls,
        // instead of each call's record taking the write lock once more.
        let window = tokio::time::Instant::now() + BATCH_WINDOW;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Record(e) => batch.push(*e),
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() >= MAX_BATCH || !waiting.is_empty() {
                break;
            }
            next = tokio::time::timeout_at(window, rx.recv())
                .await
                .ok()
                .flatten();
        }
        write(&store, &batch).await;
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Writes a batch, trying three times; then logs what is lost (actions and
/// request ids only).
async fn write(store: &Store, batch: &[AuditEvent]) {
    let mut attempt = 0;
    loop {
        match store.insert_audit_events(batch).await {
            Ok(()) => return,
            Err(e) => match RETRY_PAUSES.get(attempt) {
                Some(pause) => {
                    tracing::warn!(error = %e, records = batch.len(), "cannot write audit records; retrying");
                    tokio::time::sleep(*pause).await;
                    attempt += 1;
                }
                None => {
                    for r in batch {
                        tracing::error!(error = %e, action = %r.action, request_id = %r.request_id,
                            status = r.status, "audit record lost");
                    }
                    return;
                }
            },
        }
    }
}
