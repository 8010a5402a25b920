//! The audit trail (`GET /v1/audit`): one record per state-changing call,
//! refused ones included, shaped after CloudTrail events and OpenStack's
//! CADF records (initiator, action, target, outcome).
//!
//! A record never holds a password, a token, user data or a request body:
//! only who (user or agent, and from which address), what (the action and
//! the object's type and id) and how it ended (status, outcome, error code).

use crate::{HostId, ProjectId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who made a call (CADF's initiator type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Initiator {
    /// A user, known by a bearer token or by the name logged in with.
    User,
    /// A host's agent, known by its agent credentials.
    Agent,
    /// Nobody known: a registration, a login for an unknown name, or a call
    /// whose credentials were refused.
    Anonymous,
}

impl Initiator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Agent => "agent",
            Self::Anonymous => "anonymous",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Agent, Self::Anonymous]
            .into_iter()
            .find(|i| i.as_str() == s)
    }
}

/// How a call ended (CADF's outcome, with refusals apart from failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// 1xx-3xx: done.
    Success,
    /// 401, 403 or 429: the caller was not allowed (or not now).
    Denied,
    /// Any other 4xx or 5xx: not done.
    Failure,
}

impl Outcome {
    /// The outcome of an HTTP status.
    pub fn of_status(status: u16) -> Self {
        match status {
            401 | 403 | 429 => Self::Denied,
            s if s >= 400 => Self::Failure,
            _ => Self::Success,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Success, Self::Denied, Self::Failure]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// The record's id (time-ordered; the `marker` of the next page).
    pub id: String,
    /// When the call was answered.
    pub time: DateTime<Utc>,
    /// The id this controller gave the request (also its `X-Request-Id`
    /// response header).
    pub request_id: String,
    pub initiator: Initiator,
    /// The user, when known (for a failed login: the user of that name).
    pub user: Option<UserId>,
    pub user_name: Option<String>,
    /// The user's project.
    pub project: Option<ProjectId>,
    /// The host, for an agent known by its own credentials.
    pub host: Option<HostId>,
    /// The client's IP address as this controller saw it.
    pub source_address: Option<String>,
    /// The client's `User-Agent`, cut to 200 characters (`nubis-portal` for
    /// the portal's calls).
    pub user_agent: Option<String>,
    /// What was asked, e.g. `server.create`, `server.delete`, `token.create`
    /// (log in), `token.delete` (log out), `user.create` (register),
    /// `host.register`.
    pub action: String,
    /// The HTTP method and path (no query string).
    pub method: String,
    pub path: String,
    /// The object acted on, e.g. `server` and its id (for a create: the new
    /// object's, when it was made).
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    pub outcome: Outcome,
    /// The API error code of a refusal or failure (e.g. `forbidden`,
    /// `quota_exceeded`); never its message.
    pub error: Option<String>,
}

/// One page of the trail, newest first (`GET /v1/audit`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Pass as `marker` for the next (older) page; absent on the last page.
    pub next_marker: Option<String>,
}

/// The header carrying the next page's marker of a JSON lines export.
pub const NEXT_MARKER_HEADER: &str = "x-next-marker";
/// The media type of a JSON lines export.
pub const JSONL_MEDIA_TYPE: &str = "application/jsonl";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_statuses() {
        assert_eq!(Outcome::of_status(201), Outcome::Success);
        assert_eq!(Outcome::of_status(204), Outcome::Success);
        for s in [401, 403, 429] {
            assert_eq!(Outcome::of_status(s), Outcome::Denied, "{s}");
        }
        for s in [400, 404, 409, 422, 500, 503] {
            assert_eq!(Outcome::of_status(s), Outcome::Failure, "{s}");
        }
        for o in [Outcome::Success, Outcome::Denied, Outcome::Failure] {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        for i in [Initiator::User, Initiator::Agent, Initiator::Anonymous] {
            assert_eq!(Initiator::parse(i.as_str()), Some(i));
        }
        assert_eq!(Outcome::parse("ok"), None);
    }
}
