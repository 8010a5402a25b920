//! `X-Auth-Token`: how every OpenStack request authenticates. The token is
//! a Nubis bearer token (whichever API issued it), checked by the same code
//! as `/v1`'s `Authorization: Bearer`.

use super::errors::IdentityError;
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::http::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The header OpenStack clients send their token in.
pub const AUTH_TOKEN_HEADER: &str = "x-auth-token";

/// The caller, authenticated by `X-Auth-Token`.
pub struct OsCaller(pub Caller);

impl FromRequestParts<AppState> for OsCaller {
    type Rejection = IdentityError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, IdentityError> {
        let token = parts
            .headers
            .get(AUTH_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("The request you have made requires authentication.")
            })?;
        Ok(Self(
            Caller::from_token(state, token, &parts.extensions).await?,
        ))
    }
}
