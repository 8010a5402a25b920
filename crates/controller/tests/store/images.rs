//! Images.

use super::*;

pub(crate) async fn images_create_and_activate(db: &Db) {
    let alice = user(db, "alice").await;
    let kernel = db
        .create_image(&NewImage {
            format: ImageFormat::Aki,
            ..new_image(alice.project, "vmlinuz", Visibility::Private)
        })
        .await
        .unwrap();
    let initrd = db
        .create_image(&NewImage {
            format: ImageFormat::Ari,
            ..new_image(alice.project, "initrd", Visibility::Private)
        })
        .await
        .unwrap();
    let disk = db
        .create_image(&NewImage {
            kernel: Some(kernel.id),
            initrd: Some(initrd.id),
            cmdline: Some("console=ttyS0 root=/dev/vda"),
            format: ImageFormat::Raw,
            ..new_image(alice.project, "tiny-linux", Visibility::Private)
        })
        .await
        .unwrap();
    assert_eq!(disk.name, "tiny-linux");
    assert_eq!(disk.os, "debian");
    assert_eq!(disk.version, "12");
    assert_eq!(disk.format, ImageFormat::Raw);
    assert_eq!(disk.status, ImageStatus::Queued);
    assert_eq!(disk.visibility, Visibility::Private);
    assert_eq!(disk.project, alice.project);
    assert_eq!(disk.kernel, Some(kernel.id));
    assert_eq!(disk.initrd, Some(initrd.id));
    assert_eq!(disk.cmdline.as_deref(), Some("console=ttyS0 root=/dev/vda"));
    assert_eq!(
        (disk.size, disk.virtual_size, disk.checksum),
        (None, None, None)
    );
    assert_eq!(kernel.format, ImageFormat::Aki);
    assert_eq!(initrd.format, ImageFormat::Ari);
    assert_eq!(kernel.kernel, None);
    assert_eq!(kernel.cmdline, None);

    let checksum = "ab".repeat(32);
    let active = db
        .activate_image(
            disk.id,
            &UploadedFile {
                size: 5 << 30,
                virtual_size: 20 << 30,
                checksum: checksum.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(active.status, ImageStatus::Active);
    assert_eq!(active.size, Some(5 << 30), "sizes above 4 GiB survive");
    assert_eq!(active.virtual_size, Some(20 << 30));
    assert_eq!(active.checksum.as_deref(), Some(checksum.as_str()));
    let again = db.image_any_project(disk.id).await.unwrap();
    assert_eq!(again.status, ImageStatus::Active);
    assert_eq!(again.created_at, disk.created_at);

    assert_conflict(
        db.create_image(&new_image(alice.project, "tiny-linux", Visibility::Public))
            .await,
        "duplicate image name in a project",
    );
    assert_not_found(db.image_any_project(ImageId::new()).await, "unknown image");
    assert_not_found(
        db.activate_image(
            ImageId::new(),
            &UploadedFile {
                size: 1,
                virtual_size: 1,
                checksum: checksum.clone(),
            },
        )
        .await,
        "activating an unknown image",
    );
}

pub(crate) async fn image_visibility(db: &Db) {
    let admin = user(db, "admin").await;
    let alice = user(db, "alice").await;
    let bob = user(db, "bob").await;
    let public = db
        .create_image(&new_image(admin.project, "debian", Visibility::Public))
        .await
        .unwrap();
    let admin_private = image(db, admin.project, "secret").await;
    // The same name in another project is fine.
    let alice_debian = image(db, alice.project, "debian").await;

    // Alice sees her own image and public ones, not others' private ones.
    let seen = db.image_visible(alice.project, "debian").await.unwrap();
    assert_eq!(seen.id, alice_debian, "her own image wins by name");
    let seen = db
        .image_visible(alice.project, &public.id.to_string())
        .await
        .unwrap();
    assert_eq!(seen.id, public.id, "a public image by id");
    assert_not_found(
        db.image_visible(alice.project, "secret").await,
        "another project's private image by name",
    );
    assert_not_found(
        db.image_visible(alice.project, &admin_private.to_string())
            .await,
        "another project's private image by id",
    );
    // Bob has no "debian" of his own: he gets the public one.
    assert_eq!(
        db.image_visible(bob.project, "debian").await.unwrap().id,
        public.id
    );
    assert_eq!(
        db.image_visible(admin.project, "secret").await.unwrap().id,
        admin_private
    );
    assert_not_found(db.image_visible(bob.project, "nope").await, "unknown image");

    let ids = |images: Vec<nubis_api::images::Image>| {
        let mut ids: Vec<ImageId> = images.into_iter().map(|i| i.id).collect();
        ids.sort();
        ids
    };
    let mut expect_alice = vec![public.id, alice_debian];
    expect_alice.sort();
    assert_eq!(
        ids(db.list_images(alice.project).await.unwrap()),
        expect_alice
    );
    assert_eq!(ids(db.list_images(bob.project).await.unwrap()), [public.id]);
    let mut expect_admin = vec![public.id, admin_private];
    expect_admin.sort();
    assert_eq!(
        ids(db.list_images(admin.project).await.unwrap()),
        expect_admin
    );
}
