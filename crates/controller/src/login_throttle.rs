//! Throttling of password guessing: failed logins are counted per user name
//! and per client address over a sliding window; past the limit, further
//! attempts are refused (429 with `Retry-After`) until the oldest counted
//! failure leaves the window.
//!
//! Every attempt counts as a failure from the moment it is admitted, and a
//! success takes its own count back (and clears the user's): so a burst of
//! parallel guesses cannot all pass the check before any of them is
//! recorded. The real user is locked out at most one window, and a success
//! clears the name's count at once. A success does not clear the address's
//! count: an attacker could otherwise reset it between guesses by logging
//! in to an account of their own.
//!
//! The counts live in memory, per controller (several controllers each
//! allow the limit; a restart forgets them). Time is passed in by the
//! caller, so tests choose it.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// How many failed logins are allowed, and over what time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures per user name within the window (wherever they come from).
    pub per_user: u32,
    /// Failures per client address within the window (whatever the names).
    pub per_address: u32,
    pub window: Duration,
}

impl Default for ThrottleLimits {
    /// 5 failures per user name, 20 per address, per minute.
    fn default() -> Self {
        Self {
            per_user: 5,
            per_address: 20,
            window: Duration::from_secs(60),
        }
    }
}

/// A refused attempt: the client may try again after `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
    /// Which count is full: the user name's, or the client address's.
    pub by: ThrottledBy,
}

/// The count that refused an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottledBy {
    User,
    Address,
}

impl Throttled {
    /// Whole seconds for a `Retry-After` header (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// An admitted attempt, to be reported as [`LoginThrottle::succeeded`] or
/// simply dropped (it then stays counted as a failure).
#[derive(Debug)]
pub struct Attempt {
    user: String,
    address: Option<IpAddr>,
    at: DateTime<Utc>,
}

/// What is counted: a user name or a client address.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    User(String),
    Address(IpAddr),
}

/// Above this many keys, expired ones are swept out on the next attempt.
const SWEEP_ABOVE: usize = 10_000;
/// Never more keys than this: the ones whose last failure is oldest go
/// first (a flood of distinct names from many addresses cannot grow
/// memory without bound; at worst it shortens some counts).
const MAX_KEYS: usize = 100_000;

/// The failure counts of one controller.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    limits: ThrottleLimits,
    failures: Mutex<HashMap<Key, VecDeque<DateTime<Utc>>>>,
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            failures: Mutex::default(),
        }
    }

    /// Admits an attempt to log in as `user` from `address` (unknown for
    /// in-process calls without one) at `now`, counting it as a failure
    /// until it succeeds; or refuses it when either count is full.
    pub fn admit(
        &self,
        user: &str,
        address: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Result<Attempt, Throttled> {
        let address = address.map(address_key);
        let limits = &self.limits;
        let keys = [
            Some((
                Key::User(user.to_owned()),
                limits.per_user,
                ThrottledBy::User,
            )),
            address.map(|a| (Key::Address(a), limits.per_address, ThrottledBy::Address)),
        ];
        let window = chrono::Duration::from_std(limits.window).unwrap_or(chrono::Duration::MAX);
        let since = now
            .checked_sub_signed(window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // The longest wait of the full counts, if any is full.
        let mut refusal: Option<Throttled> = None;
        for (key, limit, by) in keys.iter().flatten() {
            let Some(times) = failures.get_mut(key) else {
                continue;
            };
            while times.front().is_some_and(|t| *t <= since) {
                times.pop_front();
            }
            if times.len() >= *limit as usize {
                // Free again when the oldest counted failure leaves the window.
                let oldest = times.front().copied().unwrap_or(now);
                let wait = (oldest + window - now)
                    .to_std()
                    .unwrap_or_default()
                    .min(limits.window);
                if refusal.is_none_or(|r| wait > r.retry_after) {
                    refusal = Some(Throttled {
                        retry_after: wait,
                        by: *by,
                    });
                }
            }
        }
        if let Some(refused) = refusal {
            return Err(refused);
        }
        for (key, _, _) in keys.into_iter().flatten() {
            failures.entry(key).or_default().push_back(now);
        }
        if failures.len() > SWEEP_ABOVE {
            sweep(&mut failures, since);
        }
        Ok(Attempt {
            user: user.to_owned(),
            address,
            at: now,
        })
    }

    /// The attempt's password was right: the user name's count is cleared,
    /// and the address's takes this attempt back.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&Key::User(attempt.user));
        if let Some(address) = attempt.address {
            let key = Key::Address(address);
            if let Some(times) = failures.get_mut(&key) {
                if let Some(i) = times.iter().rposition(|t| *t == attempt.at) {
                    times.remove(i);
                }
                if times.is_empty() {
                    failures.remove(&key);
                }
            }
        }
    }

    /// How many names and addresses have counts (for tests of the bound).
    pub fn tracked_keys(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Drops counts with nothing inside the window; then, while still above
/// [`MAX_KEYS`], the keys whose last failure is oldest.
fn sweep(failures: &mut HashMap<Key, VecDeque<DateTime<Utc>>>, since: DateTime<Utc>) {
    failures.retain(|_, times| times.back().is_some_and(|t| *t > since));
    if failures.len() > MAX_KEYS {
        let mut last: Vec<(DateTime<Utc>, Key)> = failures
            .iter()
            .filter_map(|(k, t)| t.back().map(|t| (*t, k.clone())))
            .collect();
        last.sort_unstable_by_key(|(t, _)| *t);
        let excess = failures.len() - MAX_KEYS;
        for (_, key) in last.into_iter().take(excess) {
            failures.remove(&key);
        }
    }
}

/// The address as counted: IPv4 as is (also when mapped into IPv6); IPv6
/// by its /64, which one client usually holds whole.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        let t0: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap();
        t0 + chrono::Duration::seconds(secs)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleLimits {
            per_user: 5,
            per_address: 8,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn the_sixth_failure_within_the_window_is_refused_until_it_passes() {
        let th = throttle();
        for i in 0..5 {
            th.admit("alice", ip("192.0.2.1"), at(i))
                .expect("within the limit");
        }
        let refused = th.admit("alice", ip("192.0.2.2"), at(10)).unwrap_err();
        assert_eq!(refused.by, ThrottledBy::User);
        // The first failure (at 0 s) leaves the window at 60 s.
        assert_eq!(refused.retry_after, Duration::from_secs(50));
        assert_eq!(refused.retry_after_secs(), 50);
        // Still refused just before, admitted once it has passed.
        assert!(th.admit("alice", None, at(59)).is_err());
        let attempt = th
            .admit("alice", None, at(60))
            .expect("the window moved on");
        th.succeeded(attempt);
        // Positive control: another name was never limited.
        th.admit("bob", ip("192.0.2.3"), at(10))
            .expect("bob is not alice");
    }

    #[test]
    fn a_success_clears_the_user_count_but_not_the_address_count() {
        let th = throttle();
        for i in 0..4 {
            th.admit("alice", ip("192.0.2.1"), at(i)).unwrap();
        }
        let right = th.admit("alice", ip("192.0.2.1"), at(5)).unwrap();
        th.succeeded(right);
        // Five more failures are allowed for alice again ...
        for i in 0..5 {
            th.admit("alice", ip("192.0.2.9"), at(6 + i)).unwrap();
        }
        assert!(th.admit("alice", ip("192.0.2.10"), at(12)).is_err());
        // ... while the first address keeps its four failures (the success
        // took back only itself): four more fill its count of eight.
        for name in ["b", "c", "d", "e"] {
            th.admit(name, ip("192.0.2.1"), at(20)).unwrap();
        }
        let refused = th.admit("f", ip("192.0.2.1"), at(21)).unwrap_err();
        assert_eq!(refused.by, ThrottledBy::Address);
        assert_eq!(refused.retry_after_secs(), 39);
    }

    #[test]
    fn one_address_is_limited_across_user_names() {
        let th = throttle();
        for i in 0..8 {
            th.admit(&format!("user{i}"), ip("198.51.100.7"), at(i))
                .unwrap();
        }
        let refused = th.admit("user99", ip("198.51.100.7"), at(9)).unwrap_err();
        assert_eq!(refused.by, ThrottledBy::Address);
        // Positive controls: another address, and the same names, go on.
        th.admit("user99", ip("198.51.100.8"), at(9)).unwrap();
        th.admit("user0", None, at(9)).unwrap();
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let th = throttle();
        for i in 0..8 {
            let a = format!("2001:db8:1:2::{i:x}");
            th.admit(&format!("u{i}"), ip(&a), at(0)).unwrap();
        }
        let refused = th.admit("x", ip("2001:db8:1:2:ffff::1"), at(1));
        assert_eq!(refused.unwrap_err().by, ThrottledBy::Address);
        th.admit("x", ip("2001:db8:1:3::1"), at(1))
            .expect("another /64");
        for i in 0..8 {
            th.admit(&format!("v{i}"), ip("::ffff:192.0.2.44"), at(0))
                .unwrap();
        }
        let refused = th.admit("y", ip("192.0.2.44"), at(1)).unwrap_err();
        assert_eq!(refused.by, ThrottledBy::Address);
    }

    #[test]
    fn parallel_attempts_count_before_they_finish() {
        // Five admitted attempts still running: the sixth is refused even
        // though none of the five has been reported yet.
        let th = throttle();
        let running: Vec<Attempt> = (0..5)
            .map(|_| th.admit("alice", None, at(0)).unwrap())
            .collect();
        assert!(th.admit("alice", None, at(0)).is_err());
        // Positive control: one success frees the name at once.
        th.succeeded(running.into_iter().next().unwrap());
        assert!(th.admit("alice", None, at(0)).is_ok());
    }

    #[test]
    fn a_clock_going_back_never_waits_longer_than_the_window() {
        let th = throttle();
        for _ in 0..5 {
            th.admit("alice", None, at(100)).unwrap();
        }
        let refused = th.admit("alice", None, at(0)).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(60));
    }

    #[test]
    fn memory_stays_bounded() {
        let th = throttle();
        for i in 0..(SWEEP_ABOVE + 10) {
            th.admit(&format!("n{i}"), None, at(0)).unwrap();
        }
        assert!(th.tracked_keys() > SWEEP_ABOVE);
        // A minute later the next attempt sweeps out every expired count.
        th.admit("late", None, at(61)).unwrap();
        assert_eq!(th.tracked_keys(), 1);
    }
}
