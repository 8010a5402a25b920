//! Installing from an ISO.

use super::*;

pub(crate) async fn iso_servers_hold_the_cdrom_until_ejected(db: &Db) {
    let w = world(db).await;
    // A server from a disk image has no ISO to eject.
    assert!(!get(db, &w).await.cdrom_attached);
    assert_conflict(
        db.eject_cdrom(w.project, w.server).await,
        "ejecting a disk server",
    );
    let iso = db
        .create_image(&NewImage {
            format: ImageFormat::Iso,
            ..new_image(w.project, "installer", Visibility::Private)
        })
        .await
        .unwrap()
        .id;
    let server = db
        .create_server(&new_server(w.project, "inst", iso, w.host, (1, 128, 1)))
        .await
        .unwrap();
    assert!(server.cdrom_attached, "made from an ISO: in the drive");
    let other = user(db, "mallory").await;
    assert_not_found(
        db.eject_cdrom(other.project, server.id).await,
        "ejecting another project's server",
    );
    assert_not_found(
        db.eject_cdrom(w.project, ServerId::new()).await,
        "ejecting an unknown server",
    );
    assert!(get_server(db, w.project, server.id).await.cdrom_attached);
    let ejected = db.eject_cdrom(w.project, server.id).await.unwrap();
    assert!(!ejected.cdrom_attached);
    assert!(!get_server(db, w.project, server.id).await.cdrom_attached);
    assert_conflict(db.eject_cdrom(w.project, server.id).await, "ejecting twice");
}
