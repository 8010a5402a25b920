//! Rental terms: metered traffic, traffic quotas, leases.

use super::*;

fn counter(w: &World, source: &str, inbound: u64, outbound: u64) -> TrafficCounter {
    TrafficCounter {
        server: w.server,
        // One fixed port id per test is enough: counters are keyed by source.
        port: "00000000-0000-4000-8000-000000000001"
            .parse()
            .expect("port id"),
        source: source.into(),
        inbound_bytes: inbound,
        outbound_bytes: outbound,
    }
}

async fn traffic(db: &Db, w: &World, now: chrono::DateTime<Utc>) -> (u64, u64) {
    let u = db
        .server_usage(w.project, w.server, Period::containing(now))
        .await
        .expect("usage");
    assert_eq!(u.total_bytes, u.inbound_bytes + u.outbound_bytes);
    (u.inbound_bytes, u.outbound_bytes)
}

pub(crate) async fn traffic_counts_each_byte_once(db: &Db) {
    let w = world(db).await;
    let now = Utc::now();
    db.record_traffic(w.host, &[counter(&w, "boot/7/ntap-a", 1000, 500)], now)
        .await
        .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1000, 500));
    // The same report again (a retry, an agent restart) adds nothing.
    db.record_traffic(w.host, &[counter(&w, "boot/7/ntap-a", 1000, 500)], now)
        .await
        .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1000, 500));
    // Growth adds only the difference.
    db.record_traffic(w.host, &[counter(&w, "boot/7/ntap-a", 1500, 700)], now)
        .await
        .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1500, 700));
    // A new device counts from zero; a reset device counts what it shows.
    db.record_traffic(
        w.host,
        &[
            counter(&w, "boot/9/ntap-a", 100, 100),
            counter(&w, "boot/7/ntap-a", 50, 30),
        ],
        now,
    )
    .await
    .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1650, 830));
    // Another host cannot bill this server.
    let other = host(db, "host-b").await;
    db.record_traffic(
        other,
        &[counter(&w, "boot/1/ntap-x", 1 << 30, 1 << 30)],
        now,
    )
    .await
    .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1650, 830));
    // The project's view adds up, and another period is empty.
    let p = db
        .project_usage(w.project, Period::containing(now))
        .await
        .expect("project usage");
    assert_eq!((p.inbound_bytes, p.outbound_bytes), (1650, 830));
    assert_eq!(p.servers.len(), 1);
    assert_eq!(p.servers[0].name, "web");
    assert_eq!(p.series.len(), 1);
    let later = db
        .project_usage(w.project, Period::containing(now + Duration::days(40)))
        .await
        .expect("project usage");
    assert_eq!(later.total_bytes, 0);
}

pub(crate) async fn traffic_quota_throttles_suspends_and_lifts(db: &Db) {
    let w = world(db).await;
    let now = Utc::now();
    let quota = |mib: u64, policy| Some(Some(TrafficQuota::from_bytes(mib << 20, policy)));
    let set = |q| TermsUpdate {
        bandwidth: None,
        traffic_quota: q,
    };
    db.update_terms(w.server, &set(quota(1, QuotaPolicy::Throttle)), now)
        .await
        .expect("set quota");
    assert_eq!(get(db, &w).await.traffic_state, TrafficState::Normal);
    let changes = db
        .record_traffic(w.host, &[counter(&w, "b/1/t", 1 << 20, 1 << 20)], now)
        .await
        .expect("record");
    assert_eq!(changes.len(), 1);
    let s = get(db, &w).await;
    assert_eq!(s.traffic_state, TrafficState::Throttled);
    assert!(
        s.traffic_reason
            .as_deref()
            .unwrap_or("")
            .contains("throttled"),
        "{:?}",
        s.traffic_reason
    );
    assert!(!s.network_limits(RateLimit::average(1)).suspended);
    assert_eq!(
        s.network_limits(RateLimit::average(1)).bandwidth.inbound,
        Some(RateLimit::average(1))
    );
    // Raising the quota lifts it at once.
    let change = db
        .update_terms(w.server, &set(quota(10, QuotaPolicy::Throttle)), now)
        .await
        .expect("raise");
    assert_eq!(change.map(|c| c.state), Some(TrafficState::Normal));
    assert_eq!(get(db, &w).await.traffic_reason, None);
    // Suspend policy below usage: networking cut.
    db.update_terms(w.server, &set(quota(1, QuotaPolicy::Suspend)), now)
        .await
        .expect("lower");
    let s = get(db, &w).await;
    assert_eq!(s.traffic_state, TrafficState::Suspended);
    assert!(s.network_limits(RateLimit::average(1)).suspended);
    // Nothing changes within the month; the next month lifts it.
    assert!(db
        .recheck_traffic_states(now)
        .await
        .expect("recheck")
        .is_empty());
    let next_month = Period::containing(now).end + Duration::hours(1);
    let lifted = db
        .recheck_traffic_states(next_month)
        .await
        .expect("recheck");
    assert_eq!(lifted.len(), 1);
    assert_eq!(get(db, &w).await.traffic_state, TrafficState::Normal);
    let kinds: Vec<EventKind> = db
        .events(w.project, Some(w.server))
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [
            // Every server's history starts where it was placed.
            Scheduled,
            QuotaChanged,
            TrafficThrottled,
            QuotaChanged,
            TrafficRestored,
            QuotaChanged,
            TrafficSuspended,
            TrafficRestored
        ]
    );
}

pub(crate) async fn leases_stop_then_delete(db: &Db) {
    let w = world(db).await;
    let now = Utc::now();
    let grace = Duration::days(2);
    db.renew_lease(w.server, now + Duration::hours(1), now)
        .await
        .expect("lease");
    // An exempt server with an expired lease is left alone.
    let owner2 = user(db, "bob").await;
    let img2 = image(db, owner2.project, "img").await;
    let exempt = db
        .create_server(&NewServer {
            lease_expires_at: Some(now + Duration::minutes(5)),
            ..new_server(owner2.project, "kept", img2, w.host, (1, 128, 1))
        })
        .await
        .expect("server")
        .id;
    db.set_lease_exempt(exempt, true, now)
        .await
        .expect("exempt");

    let sweep = db
        .sweep_leases(now + Duration::minutes(30), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep, LeaseSweep::default());
    let sweep = db
        .sweep_leases(now + Duration::hours(2), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep.stopped, vec![w.server]);
    let s = get(db, &w).await;
    assert_eq!(s.power, PowerState::Stopped);
    assert!(s.lease_expired);
    assert_eq!(s.lease(grace).unwrap().state, LeaseState::Expired);
    // A second pass does not stop it again.
    let sweep = db
        .sweep_leases(now + Duration::hours(3), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep, LeaseSweep::default());
    // Past the grace period it is deleted.
    let sweep = db
        .sweep_leases(
            now + Duration::hours(1) + grace + Duration::minutes(1),
            grace,
        )
        .await
        .expect("sweep");
    assert_eq!(sweep.deleted, vec![w.server]);
    assert!(get(db, &w).await.deleting);
    let kinds: Vec<EventKind> = db
        .events(w.project, None)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Scheduled,
            EventKind::LeaseRenewed,
            EventKind::LeaseExpired,
            EventKind::LeaseDeleted
        ]
    );
    let kept = db.server(owner2.project, exempt).await.expect("kept");
    assert!(!kept.deleting && !kept.lease_expired);
    assert_eq!(kept.power, PowerState::Running);
}
