//! Leases: a server rented for a term. At expiry it is stopped; after the
//! operator's grace period it is deleted.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The shortest term accepted, in seconds.
pub const MIN_TERM_SECONDS: i64 = 60;
/// The longest term accepted, in seconds (ten years).
pub const MAX_TERM_SECONDS: i64 = 10 * 366 * 86_400;

/// A term asked for: a duration from now, or an absolute expiry.
/// `{"duration_seconds": 3600}` or `{"expires_at": "2027-01-01T00:00:00Z"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "LeaseFields")]
pub enum LeaseRequest {
    Duration(Duration),
    ExpiresAt(DateTime<Utc>),
}

/// The wire form of a lease request.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseFields {
    #[serde(default)]
    #[schema(schema_with = duration_schema)]
    duration_seconds: Option<crate::whole::Whole>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

crate::schema_as!(LeaseRequest, LeaseFields);

/// `duration_seconds` as `LeaseRequest::try_from` accepts it.
fn duration_schema() -> utoipa::openapi::schema::Object {
    crate::schema::nullable(crate::schema::integer(
        MIN_TERM_SECONDS as u64,
        MAX_TERM_SECONDS as u64,
        "the term from now, in seconds (give this or expires_at)",
    ))
    .build()
}

impl Serialize for LeaseRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Duration(d) => LeaseFields {
                duration_seconds: Some(crate::whole::Whole(d.num_seconds())),
                expires_at: None,
            },
            Self::ExpiresAt(t) => LeaseFields {
                duration_seconds: None,
                expires_at: Some(t),
            },
        }
        .serialize(s)
    }
}

impl TryFrom<LeaseFields> for LeaseRequest {
    type Error = String;
    fn try_from(f: LeaseFields) -> Result<Self, String> {
        match (f.duration_seconds, f.expires_at) {
            (Some(crate::whole::Whole(s)), None) => {
                if !(MIN_TERM_SECONDS..=MAX_TERM_SECONDS).contains(&s) {
                    return Err(format!(
                        "duration_seconds must be between {MIN_TERM_SECONDS} and {MAX_TERM_SECONDS}, got {s}"
                    ));
                }
                Ok(Self::Duration(Duration::seconds(s)))
            }
            (None, Some(t)) => Ok(Self::ExpiresAt(t)),
            (Some(_), Some(_)) => {
                Err("give either duration_seconds or expires_at, not both".into())
            }
            (None, None) => Err("a lease needs duration_seconds or expires_at".into()),
        }
    }
}

impl LeaseRequest {
    /// The expiry this request asks for, seen at `now`; an expiry in the
    /// past, too close or too far is refused.
    pub fn expiry(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        match *self {
            Self::Duration(d) => Ok(now + d),
            Self::ExpiresAt(t) => {
                if t <= now {
                    return Err(format!("expires_at {} is in the past", t.to_rfc3339()));
                }
                let term = (t - now).num_seconds();
                if term < MIN_TERM_SECONDS {
                    return Err(format!(
                        "expires_at must be at least {MIN_TERM_SECONDS} seconds from now"
                    ));
                }
                if term > MAX_TERM_SECONDS {
                    return Err("expires_at is more than ten years away".into());
                }
                Ok(t)
            }
        }
    }
}

/// Where a lease stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Active,
    /// Expired: the server was stopped and is deleted at `delete_at`.
    Expired,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
        }
    }
}

/// A server's lease as users see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    pub expires_at: DateTime<Utc>,
    /// When the server will be deleted unless renewed (expiry + grace).
    pub delete_at: DateTime<Utc>,
    pub state: LeaseState,
    /// Set by an admin: the lease is never enforced.
    pub exempt: bool,
}

/// `POST /v1/servers/{id}/lease`: renew (or start) a lease with
/// `{"term": {"duration_seconds": N}}`; admins may also exempt a server
/// (`{"exempt": true}`) or lift the exemption.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewLease {
    /// The new term.
    #[serde(default)]
    pub term: Option<LeaseRequest>,
    #[serde(default)]
    pub exempt: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_parse_and_expiries_are_checked() {
        let now = Utc::now();
        let d: LeaseRequest = serde_json::from_str(r#"{"duration_seconds":3600}"#).unwrap();
        assert_eq!(d.expiry(now).unwrap(), now + Duration::hours(1));
        let past: LeaseRequest =
            serde_json::from_str(r#"{"expires_at":"2001-01-01T00:00:00Z"}"#).unwrap();
        assert!(past.expiry(now).unwrap_err().contains("in the past"));
        for bad in [
            r#"{"duration_seconds":0}"#,
            r#"{"duration_seconds":-60}"#,
            r#"{"duration_seconds":59}"#,
            r#"{"duration_seconds":999999999999}"#,
            r#"{}"#,
            r#"{"duration_seconds":60,"expires_at":"2030-01-01T00:00:00Z"}"#,
            r#"{"expires_at":"tomorrow"}"#,
        ] {
            assert!(serde_json::from_str::<LeaseRequest>(bad).is_err(), "{bad}");
        }
    }
}
