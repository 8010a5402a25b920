//! The operator's rental settings: how hard a throttled server is limited,
//! how long an expired lease waits before deletion, how often terms are
//! checked.

use nubis_api::bandwidth::RateLimit;
use std::time::Duration;

/// Operator settings for rental terms.
#[derive(Clone, Debug)]
pub struct RentalSettings {
    /// The rate a server drops to, both directions, when its traffic quota
    /// is used up under the `throttle` policy.
    pub throttle: RateLimit,
    /// How long a stopped, expired server is kept before it is deleted.
    pub lease_grace: chrono::Duration,
    /// How often leases and quota periods are checked.
    pub sweep_interval: Duration,
}

impl Default for RentalSettings {
    fn default() -> Self {
        Self {
            throttle: RateLimit::average(1),
            lease_grace: chrono::Duration::days(3),
            sweep_interval: Duration::from_secs(10),
        }
    }
}
