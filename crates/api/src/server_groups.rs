//! Server groups: where their members may run relative to each other, as
//! Nova's `nova boot --hint group=<id>`.

use crate::{Name, ProjectId, ServerGroupId, ServerId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The placement rule of a group's members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GroupPolicy {
    /// All members on one host.
    Affinity,
    /// Every member on a different host.
    AntiAffinity,
}

impl GroupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Affinity => "affinity",
            Self::AntiAffinity => "anti-affinity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Affinity, Self::AntiAffinity]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// `POST /v1/server-groups`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerGroup {
    pub name: Name,
    pub policy: GroupPolicy,
}

/// A server group of a project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerGroup {
    pub id: ServerGroupId,
    pub project: ProjectId,
    pub name: String,
    pub policy: GroupPolicy,
    /// Its servers (those being deleted included).
    pub members: Vec<ServerId>,
    pub created_at: DateTime<Utc>,
}

/// `scheduler_hints` of `POST /v1/servers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerHints {
    /// A server group (id or name) of the project: the new server joins it
    /// and is placed by its policy.
    #[serde(default)]
    pub group: Option<String>,
    /// Only hosts with this accelerator (e.g. `kvm` for guests that need
    /// hardware virtualization).
    #[serde(default)]
    pub accel: Option<crate::agent::Accelerator>,
}
