//! Usage records.

use super::*;

fn at(s: &str) -> chrono::DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("a time")
        .with_timezone(&Utc)
}

fn period(s: &str) -> nubis_api::traffic::Period {
    nubis_api::traffic::Period::parse(s).expect("a period")
}

/// (kind, name, size, quantity) of every record, in report order.
async fn usage(
    db: &Db,
    project: ProjectId,
    month: &str,
    now: &str,
) -> Vec<(String, String, String, f64)> {
    let report = db
        .usage_report(project, period(month), at(now))
        .await
        .expect("usage report");
    assert_eq!(report.project, project);
    assert_eq!(report.period, period(month));
    report
        .records
        .iter()
        .map(|r| {
            assert_eq!(r.unit, r.kind.unit());
            (
                r.kind.as_str().to_owned(),
                r.name.clone(),
                r.size.clone(),
                r.quantity,
            )
        })
        .collect()
}

fn rec(kind: &str, name: &str, size: &str, quantity: f64) -> (String, String, String, f64) {
    (kind.into(), name.into(), size.into(), quantity)
}

async fn insert_traffic(
    db: &Db,
    server: &str,
    project: ProjectId,
    hour: &str,
    inbound: i64,
    outbound: i64,
) {
    let mut conn = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    sqlx::query(
        "INSERT INTO traffic_hourly (server_id, project_id, hour, inbound_bytes, outbound_bytes) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(server.to_owned())
    .bind(project.to_string())
    .bind(at(hour).timestamp_millis())
    .bind(inbound)
    .bind(outbound)
    .execute(&mut conn)
    .await
    .expect("insert traffic");
    conn.close().await.expect("close raw connection");
}

pub(crate) async fn usage_follows_the_server_lifecycle(db: &Db) {
    let owner = user(db, "alice").await;
    let other = user(db, "bob").await;
    let (p, image, host) = (
        owner.project,
        image(db, owner.project, "debian-12").await,
        host(db, "host-a").await,
    );
    let new = new_server(p, "web", image, host, (2, 2048, 20));
    let id = db
        .create_server_at(&new, at("2026-11-30T20:00:00Z"))
        .await
        .expect("create")
        .id;
    // Stopped for an hour; stopping twice and starting twice change nothing.
    for t in ["2026-11-30T22:00:00Z", "2026-11-30T22:30:00Z"] {
        db.set_power_at(p, id, PowerState::Stopped, at(t))
            .await
            .expect("stop");
    }
    for t in ["2026-11-30T23:00:00Z", "2026-11-30T23:30:00Z"] {
        db.set_power_at(p, id, PowerState::Running, at(t))
            .await
            .expect("start");
    }
    // The guest shuts itself down; started again; then deleted.
    let mut down = report(id, ObservedPower::Stopped);
    down.guest_shutdown = true;
    db.apply_host_report_at(host, &full_report(vec![down]), at("2026-12-01T05:00:00Z"))
        .await
        .expect("report");
    assert_eq!(get_server(db, p, id).await.power, PowerState::Stopped);
    db.set_power_at(p, id, PowerState::Running, at("2026-12-01T06:00:00Z"))
        .await
        .expect("start");
    db.mark_deleting_at(p, id, at("2026-12-01T10:00:00Z"))
        .await
        .expect("delete");
    // A start refused on a deleting server opens nothing.
    assert_not_found(
        db.set_power_at(p, id, PowerState::Running, at("2026-12-01T11:00:00Z"))
            .await,
        "start while deleting",
    );
    // The host no longer has it: the row goes, the usage stays.
    db.apply_host_report_at(host, &full_report(vec![]), at("2026-12-01T12:00:00Z"))
        .await
        .expect("report");
    assert_not_found(db.server(p, id).await, "deleted server");

    let intervals = db
        .usage_intervals(&id.to_string())
        .await
        .expect("intervals");
    let shape: Vec<(&str, &str, u64, String, Option<String>)> = intervals
        .iter()
        .map(|i| {
            (
                i.kind.as_str(),
                i.size.as_str(),
                i.quantity,
                i.started_at.to_rfc3339(),
                i.ended_at.map(|t| t.to_rfc3339()),
            )
        })
        .collect();
    let t = |s: &str| at(s).to_rfc3339();
    assert_eq!(
        shape,
        [
            (
                "disk",
                "20gib",
                20,
                t("2026-11-30T20:00:00Z"),
                Some(t("2026-12-01T10:00:00Z"))
            ),
            (
                "instance",
                "2vcpu-2048mib",
                1,
                t("2026-11-30T20:00:00Z"),
                Some(t("2026-11-30T22:00:00Z"))
            ),
            (
                "instance",
                "2vcpu-2048mib",
                1,
                t("2026-11-30T23:00:00Z"),
                Some(t("2026-12-01T05:00:00Z"))
            ),
            (
                "instance",
                "2vcpu-2048mib",
                1,
                t("2026-12-01T06:00:00Z"),
                Some(t("2026-12-01T10:00:00Z"))
            ),
        ]
    );
    assert!(intervals.iter().all(|i| i.project == p && i.name == "web"));

    // November: 2 h + 1 h running, 4 h of 20 GiB (clipped at the month's end).
    let later = "2027-02-01T00:00:00Z";
    assert_eq!(
        usage(db, p, "2026-11", later).await,
        [
            rec("instance", "web", "2vcpu-2048mib", 3.0),
            rec("disk", "web", "20gib", 80.0),
        ]
    );
    // December: 5 h + 4 h running, 10 h of 20 GiB (clipped at its start).
    assert_eq!(
        usage(db, p, "2026-12", later).await,
        [
            rec("instance", "web", "2vcpu-2048mib", 9.0),
            rec("disk", "web", "20gib", 200.0),
        ]
    );
    // Asked during December, at 02:30: counted up to now only.
    assert_eq!(
        usage(db, p, "2026-12", "2026-12-01T02:30:00Z").await,
        [
            rec("instance", "web", "2vcpu-2048mib", 2.5),
            rec("disk", "web", "20gib", 50.0),
        ]
    );
    // Before the server existed, after it went, and another project: nothing.
    assert_eq!(usage(db, p, "2026-10", later).await, []);
    assert_eq!(usage(db, p, "2027-01", later).await, []);
    assert_eq!(usage(db, other.project, "2026-11", later).await, []);
    assert_eq!(usage(db, other.project, "2026-12", later).await, []);
}

pub(crate) async fn usage_stops_with_expired_leases(db: &Db) {
    let owner = user(db, "alice").await;
    let p = owner.project;
    let (image, host) = (image(db, p, "debian-12").await, host(db, "host-a").await);
    let mut new = new_server(p, "web", image, host, (1, 1024, 10));
    new.lease_expires_at = Some(at("2026-11-01T01:00:00Z"));
    db.create_server_at(&new, at("2026-11-01T00:00:00Z"))
        .await
        .expect("create");
    let grace = Duration::hours(2);
    // Stopped by the sweep at 02:00 (an hour after expiry), deleted at 04:00.
    let sweep = db
        .sweep_leases(at("2026-11-01T02:00:00Z"), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep.stopped.len(), 1);
    let sweep = db
        .sweep_leases(at("2026-11-01T04:00:00Z"), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep.deleted.len(), 1);
    assert_eq!(
        usage(db, p, "2026-11", "2026-12-01T00:00:00Z").await,
        [
            rec("instance", "web", "1vcpu-1024mib", 2.0),
            rec("disk", "web", "10gib", 40.0),
        ]
    );
}

pub(crate) async fn get_server(db: &Db, project: ProjectId, id: ServerId) -> ServerRecord {
    db.server(project, id).await.expect("get server")
}

pub(crate) async fn usage_of_floating_ips_and_traffic(db: &Db) {
    let owner = user(db, "alice").await;
    let other = user(db, "bob").await;
    let p = owner.project;
    db.create_floating_ip_pool(
        "public",
        "203.0.113.10".parse().unwrap(),
        "203.0.113.20".parse().unwrap(),
    )
    .await
    .expect("pool");
    let first = db
        .allocate_floating_ip_at(p, None, at("2026-11-10T00:00:00Z"))
        .await
        .expect("allocate");
    assert_eq!(first.ip.to_string(), "203.0.113.10");
    let bobs = db
        .allocate_floating_ip_at(other.project, None, at("2026-11-10T00:00:00Z"))
        .await
        .expect("allocate for bob");
    db.release_floating_ip_at(p, first.id, at("2026-11-10T12:00:00Z"))
        .await
        .expect("release");
    assert_not_found(
        db.release_floating_ip_at(p, first.id, at("2026-11-10T13:00:00Z"))
            .await,
        "release twice",
    );
    // Bob's address cannot be released by alice, and stays billed to bob.
    assert_not_found(
        db.release_floating_ip_at(p, bobs.id, at("2026-11-11T00:00:00Z"))
            .await,
        "release another project's address",
    );
    // Held from the last two hours of November on.
    let second = db
        .allocate_floating_ip_at(p, None, at("2026-11-30T22:00:00Z"))
        .await
        .expect("allocate again");
    assert_eq!(
        second.ip.to_string(),
        "203.0.113.10",
        "the address is reused"
    );

    // Traffic of a server that is gone by the time of the report; its name
    // comes from its usage intervals.
    let image = image(db, p, "debian-12").await;
    let host = host(db, "host-a").await;
    let new = new_server(p, "db", image, host, (1, 512, 5));
    let server = db
        .create_server_at(&new, at("2026-12-05T00:00:00Z"))
        .await
        .expect("create")
        .id;
    db.mark_deleting_at(p, server, at("2026-12-05T01:00:00Z"))
        .await
        .expect("delete");
    db.apply_host_report_at(host, &full_report(vec![]), at("2026-12-05T02:00:00Z"))
        .await
        .expect("report");
    let sid = server.to_string();
    const GIB: i64 = 1 << 30;
    insert_traffic(db, &sid, p, "2026-12-05T00:00:00Z", 2 * GIB, GIB / 2).await;
    insert_traffic(db, &sid, p, "2026-12-31T23:00:00Z", GIB, GIB / 4).await;
    // Outside December, and another project's: not counted.
    insert_traffic(db, &sid, p, "2026-11-30T23:00:00Z", 7 * GIB, 7 * GIB).await;
    insert_traffic(db, &sid, p, "2027-01-01T00:00:00Z", 9 * GIB, 9 * GIB).await;
    let stranger = uuid::Uuid::new_v4().to_string();
    insert_traffic(
        db,
        &stranger,
        other.project,
        "2026-12-06T00:00:00Z",
        GIB,
        GIB,
    )
    .await;

    let later = "2027-02-01T00:00:00Z";
    let ip = "203.0.113.10";
    // November: one address in two allocations (two resources, in id
    // order), 12 h and 2 h; the traffic of the month's last hour.
    let mut fips = [(first.id.to_string(), 12.0), (second.id.to_string(), 2.0)];
    fips.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<_> = fips
        .iter()
        .map(|(_, hours)| rec("floating_ip", ip, "ipv4", *hours))
        .collect();
    want.push(rec("traffic", "db", "inbound", 7.0));
    want.push(rec("traffic", "db", "outbound", 7.0));
    assert_eq!(usage(db, p, "2026-11", later).await, want);
    // December, asked on the 2nd at noon: the open address counts 36 h so
    // far; the server's hour on the 5th is still ahead. Traffic is what was
    // metered in the month.
    assert_eq!(
        usage(db, p, "2026-12", "2026-12-02T12:00:00Z").await,
        [
            rec("floating_ip", ip, "ipv4", 36.0),
            rec("traffic", "db", "inbound", 3.0),
            rec("traffic", "db", "outbound", 0.75),
        ]
    );
    assert_eq!(
        usage(db, p, "2026-12", later).await,
        [
            rec("instance", "db", "1vcpu-512mib", 1.0),
            rec("disk", "db", "5gib", 5.0),
            rec("floating_ip", ip, "ipv4", 31.0 * 24.0),
            rec("traffic", "db", "inbound", 3.0),
            rec("traffic", "db", "outbound", 0.75),
        ]
    );
    // Bob: his own address all along, and his own traffic (named by id,
    // since no interval or server knows it).
    assert_eq!(
        usage(db, other.project, "2026-12", later).await,
        [
            rec("floating_ip", "203.0.113.11", "ipv4", 31.0 * 24.0),
            rec("traffic", &stranger, "inbound", 1.0),
            rec("traffic", &stranger, "outbound", 1.0),
        ]
    );
}
