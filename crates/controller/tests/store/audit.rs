//! Audit records in the store: written in batches, read newest first with
//! filters and a marker, purged past the retention period.

use super::*;
use nubis_api::audit::{AuditEvent, Initiator, Outcome};
use nubis_controller::store::AuditFilter;

/// A record of `action` by `user` (in `project`) at `time`, with a fresh
/// time-ordered id.
fn record(
    action: &str,
    user: Option<(&str, UserId, ProjectId)>,
    status: u16,
    time: chrono::DateTime<Utc>,
) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        time: chrono::DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap(),
        request_id: uuid::Uuid::now_v7().to_string(),
        initiator: if user.is_some() {
            Initiator::User
        } else {
            Initiator::Anonymous
        },
        user: user.map(|u| u.1),
        user_name: user.map(|u| u.0.to_owned()),
        project: user.map(|u| u.2),
        host: None,
        source_address: Some("127.0.0.1".into()),
        user_agent: None,
        action: action.into(),
        method: "POST".into(),
        path: "/v1/servers".into(),
        object_type: Some("server".into()),
        object_id: Some(ServerId::new().to_string()),
        status,
        outcome: Outcome::of_status(status),
        error: (status >= 400).then(|| "forbidden".to_owned()),
    }
}

pub(crate) async fn audit_records_filter_page_and_purge(db: &Db) {
    let now = Utc::now();
    let (alice, bob) = (UserId::new(), UserId::new());
    let (pa, pb) = (ProjectId::new(), ProjectId::new());
    let mut written = Vec::new();
    for i in 0..6i64 {
        let t = now - Duration::days(10 - i);
        written.push(record("server.create", Some(("alice", alice, pa)), 202, t));
        written.push(record("flavor.create", Some(("bob", bob, pb)), 403, t));
    }
    written.push(record("token.create", None, 401, now));
    db.insert_audit_events(&written).await.unwrap();
    db.insert_audit_events(&[]).await.unwrap();

    let all = db.audit_events(&AuditFilter::default(), 100).await.unwrap();
    let mut newest_first = written.clone();
    newest_first.reverse();
    assert_eq!(all, newest_first, "every field round trips, newest first");

    let only = |f: AuditFilter| async move { db.audit_events(&f, 100).await.unwrap() };
    let by_name = only(AuditFilter {
        user: Some("alice".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_name.len(), 6);
    assert!(by_name.iter().all(|e| e.user == Some(alice)));
    let by_id = only(AuditFilter {
        user: Some(alice.to_string()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_id, by_name);
    let project = only(AuditFilter {
        project: Some(pb),
        ..Default::default()
    })
    .await;
    assert!(project.len() == 6 && project.iter().all(|e| e.project == Some(pb)));
    let denied = only(AuditFilter {
        outcome: Some(Outcome::Denied),
        action: Some("flavor.create".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(denied.len(), 6);
    let range = only(AuditFilter {
        since: Some(now - Duration::days(8)),
        until: Some(now - Duration::days(6)),
        ..Default::default()
    })
    .await;
    // Days -8 and -7 (since inclusive, until exclusive), two records each.
    assert_eq!(range.len(), 4, "{range:#?}");

    // Pages of five, by marker, give everything once.
    let mut paged = Vec::new();
    let mut filter = AuditFilter::default();
    loop {
        let page = db.audit_events(&filter, 5).await.unwrap();
        if page.is_empty() {
            break;
        }
        filter.before = Some(page.last().unwrap().id.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // Retention: older than 7 days goes (days -10, -9 and -8); the rest,
    // day -7 itself included, stays.
    let purged = db
        .purge_audit_events(now - Duration::days(7))
        .await
        .unwrap();
    assert_eq!(purged, 6);
    let left = db.audit_events(&AuditFilter::default(), 100).await.unwrap();
    assert_eq!(left, newest_first[..7]);
    assert_eq!(
        db.purge_audit_events(now - Duration::days(7))
            .await
            .unwrap(),
        0
    );
}
