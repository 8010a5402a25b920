//! Weighers: the order in which the hosts that passed the filters are tried.

use super::{Overcommit, Weigher};
use crate::store::hosts::HostLoad;
use nubis_api::HostId;

/// Memory still promisable on a host (under the overcommit ratio).
fn free_memory_mib(load: &HostLoad, overcommit: &Overcommit) -> u64 {
    ((load.host.memory_mib as f64 * overcommit.memory) as u64).saturating_sub(load.used_memory_mib)
}

/// Orders `passed` best first: spread puts the most free memory first,
/// pack the least. Ties go by name, so placement is deterministic.
pub fn order(mut passed: Vec<&HostLoad>, weigher: Weigher, overcommit: &Overcommit) -> Vec<HostId> {
    passed.sort_by(|x, y| {
        let (fx, fy) = (
            free_memory_mib(x, overcommit),
            free_memory_mib(y, overcommit),
        );
        let by_free = match weigher {
            Weigher::Spread => fy.cmp(&fx),
            Weigher::Pack => fx.cmp(&fy),
        };
        by_free.then_with(|| x.host.name.cmp(&y.host.name))
    });
    passed.into_iter().map(|l| l.host.id).collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, D};
    use super::super::*;

    #[test]
    fn spread_picks_the_host_with_most_free_memory() {
        let loads = [load("a", 4096, 3000, 0), load("b", 4096, 1000, 0)];
        let got = candidates(
            &loads,
            &PlacementRequest::new(D),
            &PlacementSettings::default(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(got, [loads[1].host.id, loads[0].host.id]);
    }

    #[test]
    fn pack_picks_the_fullest_host_that_fits() {
        let loads = [
            load("a", 4096, 3000, 0),
            load("b", 4096, 1000, 0),
            load("full", 4096, 4000, 0),
        ];
        let settings = PlacementSettings {
            weigher: Weigher::Pack,
            ..Default::default()
        };
        let got = candidates(&loads, &PlacementRequest::new(D), &settings, Utc::now()).unwrap();
        assert_eq!(got, [loads[0].host.id, loads[1].host.id]);
    }
}
