//! Who may make accounts, and how logins are limited: the controller's
//! account settings.

use crate::login_throttle::ThrottleLimits;

/// Whether anyone may register (`POST /v1/users`). Admins are never made by
/// registering: only `nubis admin create-user NAME --admin` makes one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Registration {
    /// Anyone may create an account (`nubis up`'s default).
    Open,
    /// Only an operator creates accounts (`nubis controller`'s default).
    #[default]
    Closed,
}

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
