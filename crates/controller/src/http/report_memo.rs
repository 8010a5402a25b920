//! Agents' repeated reports, recognised without reading the store.
//!
//! Most reports repeat the last one of their host word for word (idle
//! guests, heartbeats). Applying such a report changes nothing unless the
//! store changed for that host meanwhile, and every such change wakes the
//! host's long polls (see `wakeups`): a report equal to the last one
//! applied, with the host's wake-up marks unchanged since, is only a
//! heartbeat. With thousands of hosts this spares the store a thousand
//! reads a second. A report is still applied in full at least every
//! [`APPLY_AT_LEAST_EVERY`], so a change that missed its wake-up heals.

use nubis_api::agent::HostReport;
use nubis_api::HostId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a host's repeated reports go without being applied.
pub const APPLY_AT_LEAST_EVERY: Duration = Duration::from_secs(30);

/// What was last applied for each host.
#[derive(Default)]
pub struct ReportMemo {
    last: Mutex<HashMap<HostId, Applied>>,
}

struct Applied {
    digest: [u8; 32],
    marks: (u64, u64),
    at: Instant,
}

/// A report's fingerprint.
pub fn digest(report: &HostReport) -> [u8; 32] {
    use sha2::Digest;
    let json = serde_json::to_vec(report).unwrap_or_default();
    sha2::Sha256::digest(json).into()
}

impl ReportMemo {
    /// Whether a report with `digest` repeats the last one applied for
    /// `host`, with nothing changed for the host since (`marks`).
    pub fn repeats(&self, host: HostId, digest: &[u8; 32], marks: (u64, u64)) -> bool {
        self.last
            .lock()
            .expect("report memo")
            .get(&host)
            .is_some_and(|a| {
                &a.digest == digest && a.marks == marks && a.at.elapsed() < APPLY_AT_LEAST_EVERY
            })
    }

    /// A report with `digest` was applied for `host`, its marks read before.
    pub fn applied(&self, host: HostId, digest: [u8; 32], marks: (u64, u64)) {
        self.last.lock().expect("report memo").insert(
            host,
            Applied {
                digest,
                marks,
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_report_with_nothing_changed_repeats() {
        let memo = ReportMemo::default();
        let host = HostId::new();
        let report = HostReport::default();
        let d = digest(&report);
        assert!(!memo.repeats(host, &d, (0, 0)), "nothing applied yet");
        memo.applied(host, d, (0, 0));
        assert!(memo.repeats(host, &d, (0, 0)));
        assert!(!memo.repeats(host, &d, (0, 1)), "the host's state changed");
        assert!(!memo.repeats(host, &d, (1, 0)), "everyone's changed");
        let other = HostReport {
            held: vec![nubis_api::ServerId::new()],
            ..Default::default()
        };
        assert!(!memo.repeats(host, &digest(&other), (0, 0)));
        assert!(!memo.repeats(HostId::new(), &d, (0, 0)), "another host");
    }
}
