//! Quotas on images and security groups, and image deletion, on both
//! backends (`resource_limits::sqlite::NAME`, `resource_limits::postgres::NAME`).

use super::*;
use nubis_api::quotas::{UpdateQuotas, GIB};
use nubis_api::security_groups::{Direction, Protocol};
use nubis_controller::store::security_groups::NewRule;

store_tests!(
    image_count_and_bytes_are_held_to_their_quotas,
    concurrent_image_activations_never_exceed_image_gib,
    security_groups_and_rules_are_held_to_their_quotas,
    images_in_use_are_not_deleted,
);

fn file(size: u64) -> UploadedFile {
    UploadedFile {
        size,
        virtual_size: size,
        checksum: "0".repeat(64),
    }
}

fn quota_exceeded<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str, mention: &str) {
    match result {
        Err(StoreError::QuotaExceeded(m)) if m.contains(mention) => {}
        other => panic!("{what}: expected QuotaExceeded mentioning {mention:?}, got {other:?}"),
    }
}

fn rule() -> NewRule {
    NewRule {
        direction: Direction::Ingress,
        protocol: Protocol::Tcp,
        ports: Some((80, 80)),
        remote_cidr: None,
        remote_group: None,
    }
}

async fn image_count_and_bytes_are_held_to_their_quotas(db: &Db) {
    let alice = user(db, "alice").await;
    let limits = UpdateQuotas {
        images: Some(2),
        image_gib: Some(1),
        ..Default::default()
    };
    db.set_quotas(alice.project, &limits).await.unwrap();
    let a = image(db, alice.project, "a").await;
    let b = image(db, alice.project, "b").await;
    quota_exceeded(
        db.create_image(&new_image(alice.project, "c", Visibility::Private))
            .await,
        "a third image",
        "images: limit 2, in use 2",
    );
    // Bytes: exactly the limit fits, one byte more does not.
    db.activate_image(a, &file(GIB - 100)).await.unwrap();
    db.check_image_room(alice.project, 100).await.unwrap();
    quota_exceeded(
        db.check_image_room(alice.project, 101).await,
        "a declared length one byte too long",
        "image_gib",
    );
    assert_eq!(db.image_bytes_left(alice.project).await.unwrap(), 100);
    quota_exceeded(
        db.activate_image(b, &file(101)).await,
        "activating one byte too many",
        "image_gib: limit 1 GiB",
    );
    assert_eq!(
        db.image_any_project(b).await.unwrap().status,
        ImageStatus::Queued,
        "a refused activation leaves the image queued"
    );
    let q = db.project_quotas(alice.project).await.unwrap();
    assert_eq!(q.image_bytes_in_use, GIB - 100);
    assert_eq!((q.in_use.images, q.in_use.image_gib), (2, 1));
    // Lowering image_gib below the bytes held is refused.
    let zero = UpdateQuotas {
        image_gib: Some(0),
        ..Default::default()
    };
    match db.set_quotas(alice.project, &zero).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("image_gib"), "{m}"),
        other => panic!("image_gib below the bytes held: {other:?}"),
    }
    // Deleting frees count and bytes; the same activation then fits.
    db.delete_image(a).await.unwrap();
    db.activate_image(b, &file(101)).await.unwrap();
    let q = db.project_quotas(alice.project).await.unwrap();
    assert_eq!((q.in_use.images, q.image_bytes_in_use), (1, 101));
    image(db, alice.project, "c").await;
    // Another project is not limited by alice's quota.
    let bob = user(db, "bob").await;
    for name in ["a", "b", "c"] {
        image(db, bob.project, name).await;
    }
}

/// Uploads finishing together: the project's lock orders the activations,
/// so their bytes never add up past the limit.
async fn concurrent_image_activations_never_exceed_image_gib(db: &Db) {
    let alice = user(db, "alice").await;
    let limits = UpdateQuotas {
        image_gib: Some(1),
        ..Default::default()
    };
    db.set_quotas(alice.project, &limits).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(image(db, alice.project, &format!("i{i}")).await);
    }
    let quarter = file(GIB / 4 + 1);
    let results =
        futures_util::future::join_all(ids.iter().map(|id| db.activate_image(*id, &quarter))).await;
    let mut ok = 0;
    for r in results {
        match r {
            Ok(_) => ok += 1,
            Err(StoreError::QuotaExceeded(_)) => {}
            Err(e) => panic!("an activation failed otherwise: {e}"),
        }
    }
    assert_eq!(ok, 3, "three quarters and a bit fit in 1 GiB, four do not");
    let q = db.project_quotas(alice.project).await.unwrap();
    assert_eq!(q.image_bytes_in_use, 3 * (GIB / 4 + 1));
}

async fn security_groups_and_rules_are_held_to_their_quotas(db: &Db) {
    let alice = user(db, "alice").await;
    let limits = UpdateQuotas {
        security_groups: Some(1),
        security_group_rules: Some(5),
        ..Default::default()
    };
    db.set_quotas(alice.project, &limits).await.unwrap();
    // The default group is made whatever the quota, with its 4 rules.
    db.ensure_default_security_group(alice.project)
        .await
        .unwrap();
    let q = db.project_quotas(alice.project).await.unwrap();
    assert_eq!(
        (q.in_use.security_groups, q.in_use.security_group_rules),
        (0, 4)
    );
    let web = db
        .create_security_group(alice.project, "web", "")
        .await
        .unwrap();
    quota_exceeded(
        db.create_security_group(alice.project, "db", "").await,
        "a second group",
        "security_groups: limit 1, in use 1",
    );
    db.add_rule(web.id, &rule()).await.unwrap();
    quota_exceeded(
        db.add_rule(web.id, &rule()).await,
        "a sixth rule",
        "security_group_rules: limit 5, in use 5",
    );
    // Deleting a rule makes room again.
    let first = db.security_group(alice.project, "web").await.unwrap().rules[0].id;
    db.delete_rule(web.id, first).await.unwrap();
    db.add_rule(web.id, &rule()).await.unwrap();
    // Concurrent rule adds stop at the limit.
    let more = UpdateQuotas {
        security_group_rules: Some(8),
        ..Default::default()
    };
    db.set_quotas(alice.project, &more).await.unwrap();
    let r = rule();
    let results = futures_util::future::join_all((0..6).map(|_| db.add_rule(web.id, &r))).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    let q = db.project_quotas(alice.project).await.unwrap();
    assert_eq!(q.in_use.security_group_rules, 8);
}

async fn images_in_use_are_not_deleted(db: &Db) {
    let alice = user(db, "alice").await;
    let h = host(db, "h1").await;
    let disk = image(db, alice.project, "disk").await;
    let mut kernel_image = new_image(alice.project, "vmlinuz", Visibility::Private);
    kernel_image.format = ImageFormat::Aki;
    let kernel = db.create_image(&kernel_image).await.unwrap().id;
    let mut booted = new_image(alice.project, "booted", Visibility::Private);
    booted.kernel = Some(kernel);
    let booted = db.create_image(&booted).await.unwrap().id;
    let server = db
        .create_server(&new_server(alice.project, "web", disk, h, (1, 128, 1)))
        .await
        .unwrap();
    match db.delete_image(disk).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("1 server(s)"), "{m}"),
        other => panic!("deleting a used image: {other:?}"),
    }
    match db.delete_image(kernel).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("'booted'"), "{m}"),
        other => panic!("deleting a kernel in use: {other:?}"),
    }
    // Being deleted still counts; gone, it does not.
    db.mark_deleting(alice.project, server.id).await.unwrap();
    assert!(matches!(
        db.delete_image(disk).await,
        Err(StoreError::Conflict(_))
    ));
    db.apply_host_report(h, &full_report(vec![])).await.unwrap();
    db.delete_image(disk).await.unwrap();
    db.delete_image(booted).await.unwrap();
    db.delete_image(kernel).await.unwrap();
    assert!(matches!(
        db.delete_image(kernel).await,
        Err(StoreError::NotFound)
    ));
    assert!(db.list_images(alice.project).await.unwrap().is_empty());
}
