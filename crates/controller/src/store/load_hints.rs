//! A recent copy of every host's load, to rank a create's candidates
//! without reading thousands of hosts in its transaction.
//!
//! The copy is only a hint: the claim (see `placement`) checks the host it
//! takes against that host's current load, read in the create's
//! transaction, and falls back to reading every host when the hint's best
//! candidates no longer fit. So a stale hint costs time, never a wrong
//! placement. It is read again at most every [`MAX_AGE`], and each claim
//! adds its demand to it at once, so creates racing in the same second
//! spread over different hosts instead of all trying the same full one.

use super::hosts::{loads_in, HostLoad};
use super::StoreResult;
use crate::scheduler::{self, Demand, PlacementError, PlacementRequest, PlacementSettings};
use chrono::{DateTime, Utc};
use nubis_api::HostId;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How old the copy may get before a create reads it again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// The copy, shared by the store's clones.
#[derive(Default)]
pub struct LoadHints {
    copy: Mutex<Option<Copy>>,
    /// One reader at a time; the others wait and use what it read.
    reading: tokio::sync::Mutex<()>,
}

struct Copy {
    read_at: Instant,
    loads: Vec<HostLoad>,
}

impl LoadHints {
    /// The best `k` candidates for `request` by the copy (read again first
    /// if older than [`MAX_AGE`]). Called before the create's transaction,
    /// which this ranking of thousands of hosts must not make longer.
    pub async fn rank(
        &self,
        pool: &sqlx::AnyPool,
        request: &PlacementRequest,
        settings: &PlacementSettings,
        now: DateTime<Utc>,
        k: usize,
    ) -> StoreResult<Result<Vec<HostId>, PlacementError>> {
        if let Some(order) = self.rank_fresh(request, settings, now, k) {
            return Ok(order);
        }
        let _reading = self.reading.lock().await;
        if let Some(order) = self.rank_fresh(request, settings, now, k) {
            return Ok(order);
        }
        let loads = loads_in(&mut *pool.acquire().await?).await?;
        let order = scheduler::best_candidates(&loads, request, settings, now, k);
        *self.copy.lock().expect("load hints") = Some(Copy {
            read_at: Instant::now(),
            loads,
        });
        Ok(order)
    }

    fn rank_fresh(
        &self,
        request: &PlacementRequest,
        settings: &PlacementSettings,
        now: DateTime<Utc>,
        k: usize,
    ) -> Option<Result<Vec<HostId>, PlacementError>> {
        let copy = self.copy.lock().expect("load hints");
        let copy = copy.as_ref().filter(|c| c.read_at.elapsed() < MAX_AGE)?;
        Some(scheduler::best_candidates(
            &copy.loads,
            request,
            settings,
            now,
            k,
        ))
    }

    /// `host` took `demand` (or, when the claim read it, now has `load`).
    pub fn claimed(&self, load: &HostLoad, demand: Demand) {
        let mut copy = self.copy.lock().expect("load hints");
        let Some(copy) = copy.as_mut() else { return };
        if let Some(hint) = copy.loads.iter_mut().find(|l| l.host.id == load.host.id) {
            *hint = load.clone();
            hint.used_vcpus += demand.vcpus;
            hint.used_memory_mib += demand.memory_mib;
            hint.used_disk_gib += demand.disk_gib;
            hint.instances += 1;
        }
    }
}
