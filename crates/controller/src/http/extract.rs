//! Request extractors that answer bad input in the API's error format.

use super::error::ApiError;
use super::AppState;
use crate::auth::token_hash;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use nubis_api::users::User;
use serde::de::DeserializeOwned;

/// JSON body; malformed, mistyped, invalid or oversized bodies become 4xx
/// errors with serde's message (which names the field and the reason).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// An optional JSON body: a request with neither a body nor a
/// `Content-Type` is `T::default()`; any other body is read as [`ApiJson`].
pub struct OptionalApiJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let typed = req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, super::MAX_JSON_BODY)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body too large",
                )
            })?;
        if bytes.is_empty() && !typed {
            return Ok(Self(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        // JSON `null` is "no body" too (the document says the body is optional).
        let ApiJson(v) = ApiJson::<Option<T>>::from_request(req, state).await?;
        Ok(Self(v.unwrap_or_default()))
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            // "Failed to deserialize the JSON body into the target type: name: ..."
            // The body parsed, so where in it serde stopped says nothing a
            // client can use: the message names the field and the reason.
            let msg = std::error::Error::source(&e)
                .map(|s| without_position(&s.to_string()).to_owned())
                .unwrap_or_else(|| e.body_text());
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", msg)
        }
        JsonRejection::JsonSyntaxError(e) => {
            let msg = std::error::Error::source(&e)
                .map(|s| format!("malformed JSON: {s}"))
                .unwrap_or_else(|| e.body_text());
            ApiError::bad_request(msg)
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a JSON body with 'Content-Type: application/json'",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large",
            )
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// `msg` without serde_json's ` at line L column C` suffix (kept only for
/// syntax errors, where the position points at the typo).
fn without_position(msg: &str) -> &str {
    let Some(at) = msg.rfind(" at line ") else {
        return msg;
    };
    let tail = &msg[at + " at line ".len()..];
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match tail.split_once(" column ") {
        Some((line, column)) if is_number(line) && is_number(column) => &msg[..at],
        _ => msg,
    }
}

/// A path parameter; an unparsable one (e.g. not a UUID) is a 404, since no
/// object can have that id.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::not_found("resource"))
            }
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub struct Caller {
    pub user: User,
    /// The raw token's hash, for logout.
    pub token_hash: String,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.user.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an admin"))
        }
    }

    /// The project a `/v1/projects/{id}/...` path names: `current` or the
    /// caller's own id, or for admins any existing project. Anything else
    /// answers 404, as if it did not exist.
    pub async fn project_in_path(
        &self,
        state: &AppState,
        raw: &str,
    ) -> Result<nubis_api::ProjectId, ApiError> {
        if raw == "current" {
            return Ok(self.user.project);
        }
        let project: nubis_api::ProjectId =
            raw.parse().map_err(|_| ApiError::not_found("project"))?;
        if project == self.user.project {
            return Ok(project);
        }
        if self.user.admin {
            state
                .store
                .project_name(project)
                .await
                .map_err(ApiError::from_store("project"))?;
            return Ok(project);
        }
        Err(ApiError::not_found("project"))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::unauthorized("missing 'Authorization: Bearer <token>' header")
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
            })?;
        Self::from_token(state, token, &parts.extensions).await
    }
}

impl Caller {
    /// The caller a raw bearer token names (from `Authorization: Bearer`
    /// here, from `X-Auth-Token` on the OpenStack APIs): 401 when it is
    /// unknown or expired. The request's audit slot learns the user.
    pub async fn from_token(
        state: &AppState,
        token: &str,
        extensions: &axum::http::Extensions,
    ) -> Result<Self, ApiError> {
        let hash = token_hash(token);
        match state.store.user_by_token(&hash).await {
            Ok(user) => {
                if let Some(slot) = crate::audit::slot_of(extensions) {
                    slot.user(&user);
                }
                Ok(Self {
                    user,
                    token_hash: hash,
                })
            }
            Err(crate::store::StoreError::NotFound) => Err(ApiError::unauthorized(
                "invalid or expired token; log in again",
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// An agent, authenticated by its host certificate (mutual TLS on the
/// agent protocol's listener): the certificate must be its host's current
/// one (a host that joined again has a new one). Without a certificate the
/// answer is 401; with another host's, handlers answer 403.
pub struct AgentCaller {
    pub host: nubis_api::HostId,
    pub identity: nubis_pki::PeerIdentity,
}

impl AgentCaller {
    /// A host may read and report only its own state.
    pub fn require_host(&self, host: nubis_api::HostId) -> Result<(), ApiError> {
        if host == self.host {
            Ok(())
        } else {
            tracing::warn!(caller = %self.host, asked = %host, "a host asked for another host's state");
            Err(ApiError::forbidden(
                "a host certificate gives access to its own host only",
            ))
        }
    }
}

impl FromRequestParts<AppState> for AgentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(nubis_pki::serve::Peer(Some(identity))) =
            parts.extensions.get::<nubis_pki::serve::Peer>().cloned()
        else {
            return Err(ApiError::unauthorized(
                "a host certificate of the cluster is needed (join with a join token first)",
            ));
        };
        let host: nubis_api::HostId = identity
            .host()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| ApiError::forbidden("not a host certificate"))?;
        match state.store.host_certificate(host).await {
            Ok(Some(current)) if current == identity.fingerprint => {
                if let Some(slot) = crate::audit::slot_of(&parts.extensions) {
                    slot.agent(Some(host));
                }
                Ok(Self { host, identity })
            }
            Ok(_) | Err(crate::store::StoreError::NotFound) => Err(ApiError::forbidden(
                "this host certificate is no longer valid (the host joined again or was removed)",
            )),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_position;

    #[test]
    fn positions_are_cut_from_validation_messages_only_at_the_end() {
        assert_eq!(
            without_position("password must be at least 8 characters long at line 1 column 33"),
            "password must be at least 8 characters long"
        );
        assert_eq!(
            without_position(
                "memory_mib: must be between 64 and 262144 MiB, got 0 at line 1 column 43"
            ),
            "memory_mib: must be between 64 and 262144 MiB, got 0"
        );
        assert_eq!(without_position("no position here"), "no position here");
        assert_eq!(
            without_position("name 'x at line 3' is taken"),
            "name 'x at line 3' is taken"
        );
    }
}
