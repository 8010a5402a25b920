//! Moves: placement generations, one running move per server, failure back
//! to the source, leftovers and their `fenced` events.

use super::*;
use nubis_api::migrations::{MigrationKind, MigrationState};
use nubis_controller::scheduler::{Demand, PlacementError};
use nubis_controller::store::moves::{ArrivalKind, HostLeftovers, NewMove};

fn cold(server: ServerId, source: HostId, target: HostId) -> NewMove {
    NewMove {
        server,
        kind: MigrationKind::Cold,
        arrival: ArrivalKind::Copy,
        source,
        target,
        events: vec![(EventKind::Migrating, "migrating".into())],
        demand: Demand {
            vcpus: 2,
            memory_mib: 2048,
            disk_gib: 20,
        },
        overcommit: Default::default(),
    }
}

async fn generation(db: &Db, server: ServerId) -> u64 {
    db.placements(&[server]).await.unwrap()[&server].generation
}

pub(crate) async fn moves_raise_generations_and_fail_back(db: &Db) {
    let w = world(db).await;
    let b = host(db, "host-b").await;
    let now = Utc::now();
    assert_eq!(
        generation(db, w.server).await,
        1,
        "a new server's first placement"
    );

    let m = db
        .start_move(&cold(w.server, w.host, b), now)
        .await
        .unwrap();
    assert_eq!(m.generation, 2);
    assert_eq!(m.migration.state, MigrationState::Running);
    let placed = db.placements(&[w.server]).await.unwrap()[&w.server].clone();
    assert_eq!(
        (placed.host, placed.generation),
        (Some(b), 2),
        "on the target at once"
    );
    assert_eq!(db.running_moves_of_host(w.host).await.unwrap().len(), 1);
    assert_eq!(db.running_moves_of_host(b).await.unwrap().len(), 1);

    // From the wrong source, or while a move runs: refused, nothing changes.
    let stale = db.start_move(&cold(w.server, w.host, b), now).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let twice = db.start_move(&cold(w.server, b, w.host), now).await;
    assert!(
        matches!(&twice, Err(StoreError::Conflict(m)) if m.contains("already moving")),
        "{twice:?}"
    );
    assert_eq!(
        generation(db, w.server).await,
        2,
        "the refused move left no trace"
    );

    assert!(db
        .finish_move(m.migration.id, now, None, (EventKind::Migrated, "done"))
        .await
        .unwrap());
    assert!(
        !db.finish_move(m.migration.id, now, None, (EventKind::Migrated, "done"))
            .await
            .unwrap(),
        "finishing twice does nothing"
    );
    assert!(db.running_moves_of_host(b).await.unwrap().is_empty());

    // A failed move puts the server back on its source, a new generation.
    let back = db
        .start_move(&cold(w.server, b, w.host), now)
        .await
        .unwrap();
    assert_eq!(back.generation, 3);
    assert!(db
        .fail_move(back.migration.id, now, "target died", false)
        .await
        .unwrap());
    let placed = db.placements(&[w.server]).await.unwrap()[&w.server].clone();
    assert_eq!((placed.host, placed.generation), (Some(b), 4));

    let history = db.server_migrations(w.server).await.unwrap();
    let states: Vec<MigrationState> = history.iter().map(|m| m.state).collect();
    assert_eq!(states, vec![MigrationState::Failed, MigrationState::Done]);
    assert_eq!(history[0].error.as_deref(), Some("target died"));
    let kinds: Vec<EventKind> = db
        .events(w.project, Some(w.server))
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Scheduled,
            EventKind::Migrating,
            EventKind::Migrated,
            EventKind::Migrating,
            EventKind::MigrationFailed
        ]
    );
}

pub(crate) async fn leftovers_record_one_fenced_event(db: &Db) {
    let w = world(db).await;
    let now = Utc::now();
    let report = HostLeftovers {
        leftovers: vec![w.server],
        fenced: vec![w.server],
    };
    assert!(db
        .record_host_leftovers(w.host, now, &report, "host-a")
        .await
        .unwrap());
    assert!(
        !db.record_host_leftovers(w.host, now, &report, "host-a")
            .await
            .unwrap(),
        "the same report changes nothing"
    );
    assert_eq!(db.host_leftovers(w.host).await.unwrap(), vec![w.server]);
    let fenced = db
        .events(w.project, Some(w.server))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::Fenced)
        .count();
    assert_eq!(fenced, 1, "one event per fencing, not per report");
    assert!(db
        .record_host_leftovers(w.host, now, &HostLeftovers::default(), "host-a")
        .await
        .unwrap());
    assert!(db.host_leftovers(w.host).await.unwrap().is_empty());
    db.set_host_shared_store(w.host, Some("store-1"))
        .await
        .unwrap();
    assert_eq!(
        db.host_shared_stores().await.unwrap()[&w.host].as_deref(),
        Some("store-1")
    );
}

/// A host with 3000 MiB memory: room for one 2048 MiB server.
async fn small_host(db: &Db, name: &str) -> HostId {
    let mut req = register(name, 8);
    req.memory_mib = 3000;
    db.register_host(&req).await.expect("register host").id
}

/// Moves claim their target in their transaction: two moves racing onto a
/// target with room for one server, exactly one is accepted; the other is
/// refused with the reason naming the target, and once the room is free
/// again (positive control) the same move is accepted.
pub(crate) async fn concurrent_moves_never_overbook_the_target(db: &Db) {
    let w = world(db).await;
    let second = db
        .create_server(&new_server(w.project, "db", w.image, w.host, (2, 2048, 20)))
        .await
        .unwrap()
        .id;
    let target = small_host(db, "host-c").await;
    let now = Utc::now();
    let (first_move, second_move) = (cold(w.server, w.host, target), cold(second, w.host, target));
    let (one, two) = tokio::join!(
        db.start_move(&first_move, now),
        db.start_move(&second_move, now),
    );
    let (won, lost, loser) = match (one, two) {
        (Ok(m), Err(e)) => (m, e, second),
        (Err(e), Ok(m)) => (m, e, w.server),
        (one, two) => panic!("exactly one move must be accepted: {one:?} / {two:?}"),
    };
    match &lost {
        StoreError::NoValidHost(e @ PlacementError::HostRefused { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("host-c") && text.contains("room is left"),
                "{text}"
            );
        }
        other => panic!("the second move must be refused for room: {other:?}"),
    }
    let on_target = db.servers_on_host(target).await.unwrap();
    assert_eq!(on_target.len(), 1, "one server on the target");
    assert_eq!(
        generation(db, loser).await,
        1,
        "the refused move left no trace"
    );
    assert_eq!(db.running_moves_of_host(target).await.unwrap().len(), 1);

    // Positive control: the refusal was about room. Once the winner went
    // back, the loser's move onto the same target is accepted.
    assert!(db
        .fail_move(won.migration.id, now, "given up", false)
        .await
        .unwrap());
    let m = db
        .start_move(&cold(loser, w.host, target), now)
        .await
        .expect("the target has room again");
    assert_eq!(m.migration.target_host, target);
}

/// Sets when a host was last seen (raw SQL: the API only says "now").
async fn last_seen(db: &Db, host: HostId, at: chrono::DateTime<Utc>) {
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE hosts SET last_seen = $2 WHERE id = $1")
        .bind(host.to_string())
        .bind(at.timestamp_millis())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// The auto-evacuation's grace period decides which hosts are evacuated,
/// never which hosts count as up for the servers: a host silent for less
/// than the grace but longer than the heartbeat timeout is down and gets
/// nothing, however much room it has.
pub(crate) async fn auto_evacuation_places_on_hosts_up_by_the_usual_rule(db: &Db) {
    use nubis_controller::app::evacuator::evacuate_down_hosts;
    let w = world(db).await;
    let mut roomy = register("host-b", 8);
    roomy.memory_mib = 65_536;
    let b = db.register_host(&roomy).await.unwrap().id;
    let c = host(db, "host-c").await;
    let now = Utc::now();
    last_seen(db, w.host, now - Duration::minutes(10)).await;
    last_seen(db, b, now - Duration::seconds(90)).await;
    let placement = Default::default(); // down after 60 s
    let grace = std::time::Duration::from_secs(300);

    let done = evacuate_down_hosts(db, &placement, grace, now)
        .await
        .unwrap();
    assert_eq!(done.len(), 1, "host-a only (host-b is within the grace)");
    let moved = &done[0].1.as_ref().unwrap().evacuation.migrations;
    assert_eq!(moved.len(), 1, "{done:?}");
    assert_eq!(moved[0].target_host, c, "host-b is down: not a target");

    assert!(db
        .finish_move(moved[0].id, now, None, (EventKind::Migrated, "done"))
        .await
        .unwrap());

    // Positive control: with host-b up, its room makes it the choice.
    let second = db
        .create_server(&new_server(w.project, "db", w.image, w.host, (2, 2048, 20)))
        .await
        .unwrap()
        .id;
    last_seen(db, b, now).await;
    let done = evacuate_down_hosts(db, &placement, grace, now)
        .await
        .unwrap();
    let moved = &done[0].1.as_ref().unwrap().evacuation.migrations;
    assert_eq!(moved.len(), 1, "{done:?}");
    assert_eq!((moved[0].server, moved[0].target_host), (second, b));
}

/// A server moving live runs on its source until the switch-over (and
/// stays there if the move fails): its size counts on the source as well
/// as on the target while the move runs, so nothing else takes that room;
/// a cold move's stopped server counts on its target only. Its project's
/// changes concern the source too (the guest keeps its networks there).
pub(crate) async fn a_live_move_holds_room_on_both_hosts(db: &Db) {
    let w = world(db).await;
    let b = host(db, "host-b").await;
    let used = |h| async move {
        let l = db.host_load(h).await.unwrap();
        (l.used_vcpus, l.instances)
    };
    assert_eq!((used(w.host).await, used(b).await), ((2, 1), (0, 0)));
    let live = NewMove {
        kind: MigrationKind::Live,
        arrival: ArrivalKind::Live,
        ..cold(w.server, w.host, b)
    };
    let m = db.start_move(&live, Utc::now()).await.unwrap();
    assert_eq!(
        (used(w.host).await, used(b).await),
        ((2, 0), (2, 1)),
        "room held on both while the guest may run on either"
    );
    let mut concerned = db.project_hosts(w.project).await.unwrap();
    concerned.sort();
    let mut both = vec![w.host, b];
    both.sort();
    assert_eq!(concerned, both, "the source is still the project's");
    db.finish_move(
        m.migration.id,
        Utc::now(),
        Some(10),
        (EventKind::Migrated, "done"),
    )
    .await
    .unwrap();
    assert_eq!((used(w.host).await, used(b).await), ((0, 0), (2, 1)));
    assert_eq!(db.project_hosts(w.project).await.unwrap(), vec![b]);
    // Positive control: a cold move holds room on its target only.
    db.start_move(&cold(w.server, b, w.host), Utc::now())
        .await
        .unwrap();
    assert_eq!((used(w.host).await, used(b).await), ((2, 1), (0, 0)));
}
