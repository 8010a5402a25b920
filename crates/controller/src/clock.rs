//! The controller's clock for rental terms (leases, billing periods, quota
//! periods). Normally the system clock; tests may shift it forward through a
//! file holding an offset in seconds, so a month or a lease passes at once.

use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;

/// Where "now" comes from.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// A file whose content is an offset in seconds added to the system time
    /// (testing only; a missing or unreadable file means no offset).
    offset_file: Option<Arc<PathBuf>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system clock shifted by the offset in `path` (for tests).
    pub fn with_offset_file(path: PathBuf) -> Self {
        Self {
            offset_file: Some(Arc::new(path)),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        let Some(path) = &self.offset_file else {
            return now;
        };
        let offset = std::fs::read_to_string(path.as_ref())
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        now + chrono::Duration::seconds(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_file_shifts_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offset");
        let clock = Clock::with_offset_file(path.clone());
        let before = clock.now();
        std::fs::write(&path, "86400\n").unwrap();
        let shifted = clock.now();
        assert!(shifted - before >= chrono::Duration::hours(24));
        assert!(shifted - before < chrono::Duration::hours(25));
    }
}
