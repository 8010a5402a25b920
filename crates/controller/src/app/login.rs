//! Logging in: a name and password checked (throttled, bounded hashing,
//! the same cost for unknown names) and a bearer token issued. One rule for
//! every door: `/v1/tokens` and Keystone's `POST /v3/auth/tokens` both call
//! these, so a token is the same hashed, expiring token whichever API made it.

use crate::audit::AuditSlot;
use crate::auth::{self, Busy};
use crate::http::AppState;
use crate::login_throttle::Throttled;
use crate::store::{StoreError, UserRecord};
use chrono::{DateTime, Utc};
use nubis_api::UserId;
use std::net::IpAddr;

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (never says which).
    #[error("wrong user name or password")]
    Denied,
    /// Too many failed logins for this user or from this address.
    #[error("too many failed logins")]
    Throttled(Throttled),
    /// Too many password hashings running and waiting.
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness, a clock out of range: logged by the caller.
    #[error("{0}")]
    Internal(String),
}

/// How a user is named in a login.
#[derive(Clone, Copy, Debug)]
pub enum LoginName<'a> {
    Name(&'a str),
    Id(UserId),
}

/// A token just issued: the secret (shown once) and its times.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Checks `password` for the user `who` names, from `address`. Failed
/// logins are throttled per user name and per address; unknown users cost
/// a hashing too, so timing does not tell which names exist. The audit
/// slot learns the user a login was for (right or wrong).
pub async fn check_password(
    state: &AppState,
    who: LoginName<'_>,
    password: &str,
    address: Option<IpAddr>,
    audit: Option<&AuditSlot>,
) -> Result<UserRecord, LoginError> {
    let record = match who {
        LoginName::Name(name) => state.store.user_by_name(name).await,
        LoginName::Id(id) => state.store.user_record(id).await,
    };
    let record = match record {
        Ok(r) => Some(r),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    // Throttled by the name given (or the id's user, or the id itself).
    let throttle_key = match (who, &record) {
        (LoginName::Name(name), _) => name.to_owned(),
        (LoginName::Id(_), Some(r)) => r.user.name.clone(),
        (LoginName::Id(id), None) => id.to_string(),
    };
    // Counted as a failure until it succeeds; refused before any hashing.
    let attempt = state
        .login_throttle
        .admit(&throttle_key, address, state.clock.now())
        .map_err(|refused| {
            tracing::info!(user = %throttle_key, client = ?address, "login throttled");
            LoginError::Throttled(refused)
        })?;
    // An unknown name is not kept (it may be a password typed in the wrong field).
    if let (Some(r), Some(slot)) = (&record, audit) {
        slot.user(&r.user);
    }
    let hash = record.as_ref().map(|r| r.password_hash.clone());
    let password = password.to_owned();
    let ok = state
        .password_work
        .run(move || {
            let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
            auth::verify_password(&password, hash)
        })
        .await?;
    match (ok, record) {
        (true, Some(r)) => {
            state.login_throttle.succeeded(attempt);
            Ok(r)
        }
        _ => {
            tracing::info!(user = %throttle_key, client = ?address, "failed login");
            Err(LoginError::Denied)
        }
    }
}

/// Issues a bearer token for `user`, valid for the controller's token
/// lifetime, or until `not_after` if that is sooner (a token traded for a
/// token never outlives the first).
pub async fn issue_token(
    state: &AppState,
    user: UserId,
    not_after: Option<DateTime<Utc>>,
) -> Result<IssuedToken, LoginError> {
    let token = auth::new_token().map_err(|e| LoginError::Internal(e.to_string()))?;
    let issued_at = Utc::now();
    let ttl = chrono::Duration::from_std(state.token_ttl)
        .map_err(|e| LoginError::Internal(e.to_string()))?;
    let mut expires_at = issued_at + ttl;
    if let Some(limit) = not_after {
        expires_at = expires_at.min(limit);
    }
    state
        .store
        .insert_token(
            &auth::token_hash(&token),
            user,
            expires_at.timestamp_millis(),
        )
        .await?;
    Ok(IssuedToken {
        token,
        issued_at,
        expires_at,
    })
}

/// A real argon2id hash of a random password, made once, so a login for an
/// unknown user costs what a wrong password costs.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let secret = auth::new_token().unwrap_or_default();
        auth::hash_password(&secret).unwrap_or_default()
    })
}
