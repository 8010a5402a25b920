//! Users, projects and bearer tokens.

use crate::{Name, ProjectId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (argon2 would take anything; this bounds the work).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A password, checked for length when parsed. Never printed by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Password(String);

impl utoipa::PartialSchema for Password {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            None,
            MIN_PASSWORD_LEN,
            Some(MAX_PASSWORD_LEN),
            &format!("{MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"),
        )
        .into()
    }
}

impl utoipa::ToSchema for Password {}

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl TryFrom<String> for Password {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let n = s.chars().count();
        if n < MIN_PASSWORD_LEN {
            return Err(format!(
                "password must be at least {MIN_PASSWORD_LEN} characters long"
            ));
        }
        if n > MAX_PASSWORD_LEN {
            return Err(format!(
                "password must be at most {MAX_PASSWORD_LEN} characters long"
            ));
        }
        Ok(Self(s))
    }
}

impl Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `POST /v1/users` and `POST /v1/tokens`: a name and a password.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub name: Name,
    pub password: Password,
}

/// A user account.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub admin: bool,
    /// The user's personal project.
    pub project: ProjectId,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/tokens` answer: the bearer token is shown only here, once.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
    pub project: ProjectId,
}

/// Whether anyone may create an account (`POST /v1/users`). Admins are
/// never made by registering: only by `nubis admin create-user --admin`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone may create an account (`nubis up`'s default).
    Open,
    /// Only the cloud's operator creates accounts (`nubis controller`'s
    /// default).
    #[default]
    Closed,
}

/// `GET /v1/registration`: whether `POST /v1/users` is open.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistrationStatus {
    pub registration: Registration,
}
