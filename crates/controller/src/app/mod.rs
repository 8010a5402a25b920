//! Domain operations that take more than one store call: typed requests in,
//! records or an [`AppError`] out. HTTP handlers (and so the portal, which
//! calls the API in-process) only extract, call these and render.

pub mod create_server;
pub mod desired_state;
pub mod drain;
pub mod evacuator;
pub mod floating_ips;
pub mod hosts;
pub mod images;
pub mod keypairs;
pub mod login;
pub mod moves;
pub mod security_groups;

use crate::store::StoreError;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong in itself (names a missing image, a disk too
    /// small for its image, ...): the API's 400 `invalid_request`.
    #[error("{0}")]
    Invalid(String),
    /// An address the address-space rules refuse (message names the rule):
    /// the API's 400 `address_not_allowed`.
    #[error("{0}")]
    AddressNotAllowed(String),
    /// A failure that is nobody's request's fault (no randomness, ...):
    /// logged, answered 500.
    #[error("{0}")]
    Internal(String),
    /// What the store said (not found, conflict, quota, no valid host, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    /// `NotFound` of something the request body names becomes `Invalid`
    /// ("`what` '`reference`' not found"); other store errors pass.
    pub(crate) fn from_ref<'a>(
        what: &'a str,
        reference: &'a str,
    ) -> impl FnOnce(StoreError) -> AppError + 'a {
        move |e| match e {
            StoreError::NotFound => AppError::Invalid(format!("{what} '{reference}' not found")),
            other => other.into(),
        }
    }
}
