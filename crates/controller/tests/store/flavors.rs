//! Flavors.

use super::*;

pub(crate) async fn default_flavors_are_idempotent(db: &Db) {
    assert!(db.list_flavors().await.unwrap().is_empty());
    db.ensure_default_flavors().await.unwrap();
    let first = db.list_flavors().await.unwrap();
    db.ensure_default_flavors().await.unwrap();
    let second = db.list_flavors().await.unwrap();

    let names: Vec<&str> = first.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["tiny", "small", "medium", "large"]);
    let ids = |fs: &[nubis_api::flavors::Flavor]| fs.iter().map(|f| f.id).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&second), "a second call creates nothing");
    let small = db.flavor("small").await.unwrap();
    assert_eq!(
        (small.vcpus, small.memory_mib, small.disk_gib),
        (1, 1024, 10)
    );
}

pub(crate) async fn default_flavors_skip_a_cloud_with_flavors(db: &Db) {
    db.create_flavor(&flavor("custom", 3, 3072, 30))
        .await
        .unwrap();
    db.ensure_default_flavors().await.unwrap();
    let names: Vec<String> = db
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["custom"]);
}

pub(crate) async fn flavors_create_and_look_up(db: &Db) {
    let big = db
        .create_flavor(&flavor("big", 8, 32_768, 200))
        .await
        .unwrap();
    assert_eq!(big.name, "big");
    assert_eq!((big.vcpus, big.memory_mib, big.disk_gib), (8, 32_768, 200));
    let small = db.create_flavor(&flavor("wee", 1, 256, 2)).await.unwrap();

    assert_eq!(db.flavor(&big.id.to_string()).await.unwrap().name, "big");
    assert_eq!(db.flavor("wee").await.unwrap().id, small.id);
    assert_not_found(db.flavor("nope").await, "unknown flavor name");
    assert_not_found(
        db.flavor(&FlavorId::new().to_string()).await,
        "unknown flavor id",
    );
    assert_conflict(
        db.create_flavor(&flavor("big", 1, 128, 1)).await,
        "duplicate flavor",
    );
    // Listed smallest first.
    let names: Vec<String> = db
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["wee", "big"]);
}
