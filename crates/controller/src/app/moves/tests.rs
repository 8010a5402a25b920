//! The rules of moves without a database: release, arrival kind, target choice.

use super::*;
use nubis_api::agent::{Accelerator, Host};

fn placement(host: HostId, deleting: bool) -> Placement {
    Placement {
        host: Some(host),
        deleting,
        generation: 2,
    }
}

fn stores(pairs: &[(HostId, Option<&str>)]) -> HashMap<HostId, Option<String>> {
    pairs
        .iter()
        .map(|(h, s)| (*h, s.map(str::to_owned)))
        .collect()
}

#[test]
fn a_departing_server_is_not_released_until_its_move_ends() {
    let (me, other, id) = (HostId::new(), HostId::new(), ServerId::new());
    let placements = HashMap::from([(id, placement(other, false))]);
    let none = stores(&[(me, None), (other, None)]);
    let departing = HashSet::from([id]);
    assert!(release_rules(me, &[id], &placements, &departing, &none).is_empty());
    // Positive control: once the move is over, the same leftover goes.
    assert_eq!(
        release_rules(me, &[id], &placements, &HashSet::new(), &none),
        vec![Released {
            id,
            keep_disk: false
        }]
    );
}

#[test]
fn a_server_placed_here_is_never_released_unless_deleted() {
    let (me, id) = (HostId::new(), ServerId::new());
    let none = stores(&[(me, None)]);
    let here = HashMap::from([(id, placement(me, false))]);
    assert!(release_rules(me, &[id], &here, &HashSet::new(), &none).is_empty());
    let deleted = HashMap::from([(id, placement(me, true))]);
    assert_eq!(
        release_rules(me, &[id], &deleted, &HashSet::new(), &none),
        vec![Released {
            id,
            keep_disk: false
        }]
    );
}

#[test]
fn an_unknown_server_is_released_whole() {
    let (me, id) = (HostId::new(), ServerId::new());
    let shared = stores(&[(me, Some("s1"))]);
    assert_eq!(
        release_rules(me, &[id], &HashMap::new(), &HashSet::new(), &shared),
        vec![Released {
            id,
            keep_disk: false
        }]
    );
}

#[test]
fn the_directory_stays_only_when_the_new_host_shares_the_store() {
    let (me, a, b, id) = (HostId::new(), HostId::new(), HostId::new(), ServerId::new());
    let s = stores(&[(me, Some("s1")), (a, Some("s1")), (b, Some("s2"))]);
    let on = |h| HashMap::from([(id, placement(h, false))]);
    let keep = |h| release_rules(me, &[id], &on(h), &HashSet::new(), &s)[0].keep_disk;
    assert!(keep(a), "same store: the directory is the new host's now");
    assert!(!keep(b), "another store: the copy here is ours to remove");
    // A server deleted on the sharing host: that host removes the files.
    let deleted = HashMap::from([(id, placement(a, true))]);
    assert!(release_rules(me, &[id], &deleted, &HashSet::new(), &s)[0].keep_disk);
    // Without a store of its own, nothing is kept.
    let local = stores(&[(me, None), (a, None)]);
    assert!(!release_rules(me, &[id], &on(a), &HashSet::new(), &local)[0].keep_disk);
}

#[test]
fn arrival_follows_the_shared_store() {
    use MigrationKind::*;
    assert_eq!(
        arrival_kind(Cold, Some("x"), Some("x")),
        ArrivalKind::Shared
    );
    assert_eq!(arrival_kind(Cold, Some("x"), Some("y")), ArrivalKind::Copy);
    assert_eq!(arrival_kind(Cold, None, None), ArrivalKind::Copy);
    assert_eq!(
        arrival_kind(Evacuate, Some("x"), Some("x")),
        ArrivalKind::Shared
    );
    assert_eq!(arrival_kind(Evacuate, None, None), ArrivalKind::Rebuild);
    assert_eq!(
        arrival_kind(Evacuate, Some("x"), None),
        ArrivalKind::Rebuild
    );
    assert_eq!(arrival_kind(Live, Some("x"), Some("x")), ArrivalKind::Live);
}

fn load(name: &str, last_seen: DateTime<Utc>) -> HostLoad {
    HostLoad {
        host: Host {
            id: HostId::new(),
            name: name.into(),
            url: format!("https://{name}:8782"),
            vcpus: 4,
            memory_mib: 4096,
            disk_gib: 100,
            accel: Accelerator::Tcg,
            last_seen,
            cpu_model: String::new(),
            enabled: true,
            disabled_reason: None,
        },
        used_vcpus: 0,
        used_memory_mib: 0,
        used_disk_gib: 0,
        instances: 0,
    }
}

#[test]
fn the_target_is_never_the_source_nor_a_down_host() {
    let now = Utc::now();
    let timeout = &crate::scheduler::PlacementSettings::default();
    let demand = Demand {
        vcpus: 1,
        memory_mib: 256,
        disk_gib: 1,
    };
    let mut big = load("big", now);
    big.host.memory_mib = 65_536;
    let small = load("small", now);
    let dead = load("dead", now - chrono::Duration::minutes(5));
    let loads = vec![big.clone(), small.clone(), dead.clone()];
    // The scheduler would pick the roomiest host, but that is the source.
    let t = choose_target(
        &loads,
        big.host.id,
        None,
        &PlacementRequest::new(demand),
        now,
        timeout,
    )
    .unwrap();
    assert_eq!(t, small.host.id);
    // Positive control: from elsewhere, the roomiest host is chosen.
    let t = choose_target(
        &loads,
        small.host.id,
        None,
        &PlacementRequest::new(demand),
        now,
        timeout,
    )
    .unwrap();
    assert_eq!(t, big.host.id);
    // Named: by name or id; the source and a down host are refused.
    let named = |n: &str| {
        choose_target(
            &loads,
            big.host.id,
            Some(n),
            &PlacementRequest::new(demand),
            now,
            timeout,
        )
    };
    assert_eq!(named("small").unwrap(), small.host.id);
    assert_eq!(named(&small.host.id.to_string()).unwrap(), small.host.id);
    assert!(matches!(named("big"), Err(MoveError::BadRequest(_))));
    assert!(matches!(named("dead"), Err(MoveError::Conflict(_))));
    assert!(matches!(named("nowhere"), Err(MoveError::BadRequest(_))));
    // Only the source is up: nowhere to go.
    let alone = vec![big.clone(), dead];
    assert!(matches!(
        choose_target(
            &alone,
            big.host.id,
            None,
            &PlacementRequest::new(demand),
            now,
            timeout
        ),
        Err(MoveError::NoHost(_))
    ));
}

#[test]
fn a_move_keeps_its_server_groups_policy() {
    use crate::scheduler::GroupContext;
    use nubis_api::server_groups::GroupPolicy;
    let now = Utc::now();
    let settings = &crate::scheduler::PlacementSettings::default();
    let demand = Demand {
        vcpus: 1,
        memory_mib: 256,
        disk_gib: 1,
    };
    let source = load("source", now);
    let mut roomy = load("roomy", now);
    roomy.host.memory_mib = 65_536;
    let other = load("other", now);
    let loads = vec![source.clone(), roomy.clone(), other.clone()];
    let in_group = |policy| PlacementRequest {
        group: Some(GroupContext {
            policy,
            member_hosts: [roomy.host.id].into(),
        }),
        ..PlacementRequest::new(demand)
    };
    let choose =
        |r: &PlacementRequest| choose_target(&loads, source.host.id, None, r, now, settings);
    // Another member is on the roomiest host: anti-affinity moves elsewhere,
    // affinity joins it; positive control: with no group, room decides.
    assert_eq!(
        choose(&in_group(GroupPolicy::AntiAffinity)).unwrap(),
        other.host.id
    );
    assert_eq!(
        choose(&in_group(GroupPolicy::Affinity)).unwrap(),
        roomy.host.id
    );
    assert_eq!(
        choose(&PlacementRequest::new(demand)).unwrap(),
        roomy.host.id
    );
}
