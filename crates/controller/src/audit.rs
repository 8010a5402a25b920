//! The audit trail: who did what to which object, from where, and how it
//! ended, for every state-changing call (see `http::audit_recorder` for the
//! middleware that records them and `store::audit` for the rows).
//!
//! The record's fields follow CloudTrail events and OpenStack's CADF audit
//! middleware: initiator (user or agent, address, user agent), action,
//! target (object type and id), outcome and the request's id. Nothing from
//! a request body is kept, so passwords, tokens and user data never reach it.
//!
//! Identity is known only once the handler's extractors ran, so the
//! middleware puts an [`AuditSlot`] in the request's extensions and the
//! authentication extractors (and the login handler) fill it.

pub mod actions;
mod writer;

use crate::http::AppState;
use nubis_api::users::User;
use nubis_api::{HostId, ProjectId, UserId};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use writer::AuditLog;

/// Default of `--audit-retention-days`.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// How long records are kept, and how often old ones are purged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// Records older than this many days are purged.
    pub retention_days: u32,
    /// How often the leader purges (at most once per terms-keeper sweep).
    pub purge_interval: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            retention_days: DEFAULT_RETENTION_DAYS,
            purge_interval: Duration::from_secs(3600),
        }
    }
}

/// Who made a call, as the extractors learned it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: Option<UserId>,
    pub user_name: Option<String>,
    pub project: Option<ProjectId>,
    /// Set for agents' calls (with the host when its credentials name it).
    pub agent: bool,
    pub host: Option<HostId>,
}

/// The request's slot for its caller's identity, filled while the handler
/// runs and read by the recorder after the response. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct AuditSlot(Arc<Mutex<Identity>>);

impl AuditSlot {
    /// Records the calling user (bearer token, or the user a login named).
    pub fn user(&self, user: &User) {
        let mut id = self.lock();
        id.user = Some(user.id);
        id.user_name = Some(user.name.clone());
        id.project = Some(user.project);
    }

    /// Records that an agent made the call; `host` when its credentials
    /// name one (host certificates).
    pub fn agent(&self, host: Option<HostId>) {
        let mut id = self.lock();
        id.agent = true;
        if host.is_some() {
            id.host = host;
        }
    }

    /// What was recorded so far.
    pub fn identity(&self) -> Identity {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Identity> {
        // A panic while holding this lock leaves plain data: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The handler's view of its request's slot; a request the recorder did
/// not see gets a slot nobody reads.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuditSlot {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(slot_of(&parts.extensions).cloned().unwrap_or_default())
    }
}

/// The slot of a request, if the recorder put one there (requests outside
/// the API router, e.g. unit tests of extractors, have none).
pub fn slot_of(extensions: &axum::http::Extensions) -> Option<&AuditSlot> {
    extensions.get::<AuditSlot>()
}

/// Purges records past the retention period, at most once per
/// `purge_interval`. Called from the terms keeper's sweep, so only the
/// controller holding its leader lease purges.
#[derive(Debug, Default)]
pub struct RetentionSweeper {
    last: Option<Instant>,
}

impl RetentionSweeper {
    /// Purges if due; errors are logged (the next sweep tries again).
    pub async fn sweep_if_due(&mut self, state: &AppState) {
        let settings = &state.audit_settings;
        if self
            .last
            .is_some_and(|t| t.elapsed() < settings.purge_interval)
        {
            return;
        }
        let cutoff =
            state.clock.now() - chrono::Duration::days(i64::from(settings.retention_days.max(1)));
        match state.store.purge_audit_events(cutoff).await {
            Ok(n) => {
                self.last = Some(Instant::now());
                if n > 0 {
                    tracing::info!(purged = n, %cutoff, "purged old audit records");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot purge old audit records; retrying"),
        }
    }
}
