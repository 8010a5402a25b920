//! Weighers: the order in which the hosts that passed the filters are tried.

use super::{Overcommit, Weigher};
use crate::store::hosts::HostLoad;
use nubis_api::HostId;

/// Memory still promisable on a host (under the overcommit ratio).
fn free_memory_mib(load: &HostLoad, overcommit: &Overcommit) -> u64 {
    ((load.host.memory_mib as f64 * overcommit.memory) as u64).saturating_sub(load.used_memory_mib)
}

/// The first `k` of `passed`, best first (the rest is not sorted: a create
/// on thousands of hosts tries only a few). Spread puts the most free
/// memory first, pack the least; ties go by name, so placement is
/// deterministic.
pub fn best(
    mut passed: Vec<&HostLoad>,
    weigher: Weigher,
    overcommit: &Overcommit,
    k: usize,
) -> Vec<HostId> {
    let better = |x: &&HostLoad, y: &&HostLoad| {
        let (fx, fy) = (
            free_memory_mib(x, overcommit),
            free_memory_mib(y, overcommit),
        );
        let by_free = match weigher {
            Weigher::Spread => fy.cmp(&fx),
            Weigher::Pack => fx.cmp(&fy),
        };
        by_free.then_with(|| x.host.name.cmp(&y.host.name))
    };
    if k < passed.len() {
        if k == 0 {
            return Vec::new();
        }
        passed.select_nth_unstable_by(k - 1, better);
        passed.truncate(k);
    }
    passed.sort_by(better);
    passed.into_iter().map(|l| l.host.id).collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, D};
    use super::super::*;
    use super::best;

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

    #[test]
    fn the_best_few_are_the_first_of_the_whole_order() {
        let loads: Vec<HostLoad> = (0..50)
            .map(|i| {
                load(
                    &format!("h{:02}", (i * 37) % 50),
                    4096,
                    (i * 97 % 13) * 100,
                    0,
                )
            })
            .collect();
        let refs: Vec<&HostLoad> = loads.iter().collect();
        let overcommit = Overcommit::default();
        for weigher in [Weigher::Spread, Weigher::Pack] {
            let all = best(refs.clone(), weigher, &overcommit, refs.len());
            for k in [0, 1, 7, 50, 80] {
                let few = best(refs.clone(), weigher, &overcommit, k);
                assert_eq!(few, all[..k.min(all.len())], "{weigher:?} k={k}");
            }
        }
    }
}
