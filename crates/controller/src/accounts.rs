//! Who may make accounts, and how logins are limited: the controller's
//! account settings.

use crate::login_throttle::ThrottleLimits;

pub use nubis_api::users::Registration;

/// The controller's account settings.
#[derive(Clone, Copy, Debug)]
pub struct AccountSettings {
    pub registration: Registration,
    /// Failed logins allowed per user name and per client address.
    pub throttle: ThrottleLimits,
    /// Password hashings (argon2id, ~19 MiB each) allowed to wait for a
    /// core beyond those running; more are answered 503 at once.
    pub password_queue: usize,
}

impl AccountSettings {
    /// Default length of the queue of password hashings waiting for a core.
    pub const DEFAULT_PASSWORD_QUEUE: usize = 64;
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            registration: Registration::default(),
            throttle: ThrottleLimits::default(),
            password_queue: Self::DEFAULT_PASSWORD_QUEUE,
        }
    }
}
