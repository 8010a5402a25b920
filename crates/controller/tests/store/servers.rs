//! Servers: scoping, power, deletion, host reports, status, guest config.

use super::*;

pub(crate) async fn servers_are_scoped_by_project(db: &Db) {
    let alice = user(db, "alice").await;
    let bob = user(db, "bob").await;
    let img = image(db, alice.project, "img").await;
    let h = host(db, "host-a").await;
    let small = db
        .create_flavor(&flavor("small", 1, 1024, 10))
        .await
        .unwrap();

    let web = db
        .create_server(&NewServer {
            flavor: Some(small.id),
            ..new_server(alice.project, "web", img, h, (1, 1024, 10))
        })
        .await
        .unwrap();
    assert_eq!(web.project, alice.project);
    assert_eq!(web.name, "web");
    assert_eq!(web.image, img);
    assert_eq!(web.flavor, Some(small.id));
    assert_eq!((web.vcpus, web.memory_mib, web.disk_gib), (1, 1024, 10));
    assert_eq!(web.host, Some(h));
    assert_eq!(web.power, PowerState::Running);
    assert_eq!(web.reboot_generation, 0);
    assert!(!web.deleting);
    assert_eq!(web.observed_power, None);
    assert_eq!(web.observed_reboot_generation, 0);
    assert_eq!(web.fault, None);
    assert_eq!(web.launched_at, None);
    assert_eq!(web.status(), ServerStatus::Building);
    let api = api(&web);
    assert_eq!(api.status, ServerStatus::Building);
    assert_eq!(api.id, web.id);

    let db_server = db
        .create_server(&new_server(alice.project, "db", img, h, (2, 2048, 20)))
        .await
        .unwrap();
    assert_conflict(
        db.create_server(&new_server(alice.project, "web", img, h, (1, 128, 1)))
            .await,
        "duplicate server name in a project",
    );
    // Bob may use the same name.
    let bobs = db
        .create_server(&new_server(bob.project, "web", img, h, (1, 128, 1)))
        .await
        .unwrap();

    let got = db.server(alice.project, web.id).await.unwrap();
    assert_eq!(got.name, "web");
    assert_eq!(got.created_at, web.created_at);
    assert_eq!(
        db.server_by_ref(alice.project, "db").await.unwrap().id,
        db_server.id
    );
    assert_eq!(
        db.server_by_ref(alice.project, &web.id.to_string())
            .await
            .unwrap()
            .id,
        web.id
    );
    assert_eq!(
        db.server_by_ref(bob.project, "web").await.unwrap().id,
        bobs.id
    );

    // Another project's server does not exist for you.
    assert_not_found(
        db.server(bob.project, web.id).await,
        "another project's server",
    );
    assert_not_found(
        db.server_by_ref(bob.project, "db").await,
        "another project's server by name",
    );
    assert_not_found(
        db.server_by_ref(bob.project, &web.id.to_string()).await,
        "another project's server by id",
    );
    assert_not_found(
        db.server(alice.project, ServerId::new()).await,
        "unknown server",
    );

    let mut mine: Vec<ServerId> = db
        .list_servers(alice.project)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    mine.sort();
    let mut expect = vec![web.id, db_server.id];
    expect.sort();
    assert_eq!(mine, expect);
    let bobs_list = db.list_servers(bob.project).await.unwrap();
    assert_eq!(bobs_list.len(), 1);
    assert_eq!(bobs_list[0].id, bobs.id);
    assert!(db.list_servers(ProjectId::new()).await.unwrap().is_empty());

    // The host sees every project's servers.
    assert_eq!(db.servers_on_host(h).await.unwrap().len(), 3);
    assert!(db.servers_on_host(HostId::new()).await.unwrap().is_empty());
}

pub(crate) async fn set_power_and_request_reboot(db: &Db) {
    let w = world(db).await;
    let other = user(db, "mallory").await;

    let stopped = db
        .set_power(w.project, w.server, PowerState::Stopped)
        .await
        .unwrap();
    assert_eq!(stopped.power, PowerState::Stopped);
    assert_eq!(get(db, &w).await.power, PowerState::Stopped);
    let started = db
        .set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();
    assert_eq!(started.power, PowerState::Running);

    let once = db.request_reboot(w.project, w.server).await.unwrap();
    assert_eq!(once.reboot_generation, 1);
    let twice = db.request_reboot(w.project, w.server).await.unwrap();
    assert_eq!(twice.reboot_generation, 2);
    assert_eq!(twice.observed_reboot_generation, 0);

    // Another project cannot touch it.
    assert_not_found(
        db.set_power(other.project, w.server, PowerState::Stopped)
            .await,
        "set_power from another project",
    );
    assert_not_found(
        db.request_reboot(other.project, w.server).await,
        "request_reboot from another project",
    );
    assert_not_found(
        db.set_power(w.project, ServerId::new(), PowerState::Stopped)
            .await,
        "set_power on an unknown server",
    );
    let unchanged = get(db, &w).await;
    assert_eq!(unchanged.power, PowerState::Running);
    assert_eq!(unchanged.reboot_generation, 2);

    // A server being deleted takes no more power changes or reboots.
    db.mark_deleting(w.project, w.server).await.unwrap();
    assert_not_found(
        db.set_power(w.project, w.server, PowerState::Stopped).await,
        "set_power while deleting",
    );
    assert_not_found(
        db.request_reboot(w.project, w.server).await,
        "request_reboot while deleting",
    );
    let deleting = get(db, &w).await;
    assert_eq!(deleting.power, PowerState::Running);
    assert_eq!(deleting.reboot_generation, 2);
}

pub(crate) async fn mark_deleting(db: &Db) {
    let w = world(db).await;
    let other = user(db, "mallory").await;
    assert_not_found(
        db.mark_deleting(other.project, w.server).await,
        "deleting another project's server",
    );
    assert_not_found(
        db.mark_deleting(w.project, ServerId::new()).await,
        "deleting an unknown server",
    );
    assert!(!get(db, &w).await.deleting);

    // On a host, the server stays until the host no longer reports it.
    db.mark_deleting(w.project, w.server).await.unwrap();
    let marked = get(db, &w).await;
    assert!(marked.deleting);
    assert_eq!(marked.status(), ServerStatus::Deleting);
    assert_eq!(db.list_servers(w.project).await.unwrap().len(), 1);
    // Deleting twice is fine.
    db.mark_deleting(w.project, w.server).await.unwrap();
    // A host that still holds its files (an agent restarted and not yet
    // reporting it, or still removing it) keeps the row; then it goes.
    db.apply_host_report(
        w.host,
        &HostReport {
            held: vec![w.server],
            ..full_report(vec![])
        },
    )
    .await
    .unwrap();
    assert!(get(db, &w).await.deleting, "held by its host: kept");
    db.apply_host_report(w.host, &full_report(vec![]))
        .await
        .unwrap();
    assert_not_found(db.server(w.project, w.server).await, "no longer held");

    // A server on no host (placement never happened, or its host was
    // removed) goes at once. The API cannot create one, so make it by hand.
    let loose = db
        .create_server(&new_server(
            w.project,
            "loose",
            w.image,
            w.host,
            (1, 128, 1),
        ))
        .await
        .unwrap();
    raw_execute(
        db,
        "UPDATE servers SET host_id = NULL WHERE id = $1",
        loose.id.to_string(),
    )
    .await;
    assert_eq!(db.server(w.project, loose.id).await.unwrap().host, None);
    db.mark_deleting(w.project, loose.id).await.unwrap();
    assert_not_found(
        db.server(w.project, loose.id).await,
        "hostless server after delete",
    );
    assert!(db.list_servers(w.project).await.unwrap().is_empty());
}

pub(crate) async fn host_report_records_observed_state(db: &Db) {
    let w = world(db).await;
    let launched = Utc::now() - Duration::seconds(5);
    let launched = chrono::DateTime::from_timestamp_millis(launched.timestamp_millis()).unwrap();

    db.apply_host_report(
        w.host,
        &full_report(vec![report(w.server, ObservedPower::Creating)]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.observed_power, Some(ObservedPower::Creating));
    assert_eq!(s.status(), ServerStatus::Building);

    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            launched_at: Some(launched),
            ..report(w.server, ObservedPower::Running)
        }]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.observed_power, Some(ObservedPower::Running));
    assert_eq!(s.launched_at, Some(launched));
    assert_eq!(s.status(), ServerStatus::Running);

    // A report without a launch time keeps the known one.
    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            reboot_generation: 3,
            ..report(w.server, ObservedPower::Running)
        }]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.launched_at, Some(launched));
    assert_eq!(s.observed_reboot_generation, 3);

    // A failure with its reason.
    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            fault: Some("disk full".into()),
            ..report(w.server, ObservedPower::Error)
        }]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.observed_power, Some(ObservedPower::Error));
    assert_eq!(s.fault.as_deref(), Some("disk full"));
    assert_eq!(s.status(), ServerStatus::Error);
    assert_eq!(api(&s).fault.as_deref(), Some("disk full"));
    assert_eq!(s.power, PowerState::Running, "a fault is not a stop");

    // The next good report clears the fault.
    db.apply_host_report(
        w.host,
        &full_report(vec![report(w.server, ObservedPower::Running)]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.fault, None);
    assert_eq!(api(&s).fault, None);

    // Stopped by the host without a guest shutdown: desired state stays.
    db.apply_host_report(
        w.host,
        &full_report(vec![report(w.server, ObservedPower::Stopped)]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.observed_power, Some(ObservedPower::Stopped));
    assert_eq!(s.power, PowerState::Running);

    // The guest powered itself off: recorded as a stop.
    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            guest_shutdown: true,
            ..report(w.server, ObservedPower::Stopped)
        }]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.power, PowerState::Stopped);
    assert_eq!(s.status(), ServerStatus::Stopped);

    // guest_shutdown only counts together with an observed stop.
    db.set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();
    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            guest_shutdown: true,
            ..report(w.server, ObservedPower::Running)
        }]),
    )
    .await
    .unwrap();
    assert_eq!(get(db, &w).await.power, PowerState::Running);

    // A report naming an unknown server is ignored.
    db.apply_host_report(
        w.host,
        &full_report(vec![report(ServerId::new(), ObservedPower::Running)]),
    )
    .await
    .unwrap();
}

pub(crate) async fn host_report_removes_deleted_servers(db: &Db) {
    let w = world(db).await;
    let s = |name: &'static str| new_server(w.project, name, w.image, w.host, (1, 128, 1));
    let going = db.create_server(&s("going")).await.unwrap();
    let gone = db.create_server(&s("gone")).await.unwrap();
    let quiet = db.create_server(&s("quiet")).await.unwrap();
    db.mark_deleting(w.project, going.id).await.unwrap();
    db.mark_deleting(w.project, gone.id).await.unwrap();

    // The host still has `going` (being torn down) and `web`, no longer `gone`;
    // `quiet` is missing too but not being deleted, so it stays.
    db.apply_host_report(
        w.host,
        &full_report(vec![
            report(w.server, ObservedPower::Running),
            report(going.id, ObservedPower::Stopped),
        ]),
    )
    .await
    .unwrap();
    assert_not_found(
        db.server(w.project, gone.id).await,
        "deleted and unreported",
    );
    let kept = db.server(w.project, going.id).await.unwrap();
    assert!(kept.deleting);
    assert_eq!(kept.status(), ServerStatus::Deleting);
    assert!(!db.server(w.project, quiet.id).await.unwrap().deleting);
    assert_eq!(get(db, &w).await.status(), ServerStatus::Running);

    // Once the host drops it, it goes.
    db.apply_host_report(
        w.host,
        &full_report(vec![report(w.server, ObservedPower::Running)]),
    )
    .await
    .unwrap();
    assert_not_found(db.server(w.project, going.id).await, "dropped by its host");
    let left: Vec<String> = db
        .list_servers(w.project)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"web".to_string()) && left.contains(&"quiet".to_string()));
}

pub(crate) async fn host_report_for_another_host_changes_nothing(db: &Db) {
    let w = world(db).await;
    let intruder = host(db, "host-b").await;
    let doomed = db
        .create_server(&new_server(
            w.project,
            "doomed",
            w.image,
            w.host,
            (1, 128, 1),
        ))
        .await
        .unwrap();
    db.mark_deleting(w.project, doomed.id).await.unwrap();
    let before = get(db, &w).await;

    // Host B reports host A's server (stopped by the guest, even) and an
    // empty list otherwise: neither may touch host A's servers.
    db.apply_host_report(
        intruder,
        &full_report(vec![InstanceReport {
            fault: Some("not mine".into()),
            reboot_generation: 9,
            launched_at: Some(Utc::now()),
            guest_shutdown: true,
            ..report(w.server, ObservedPower::Stopped)
        }]),
    )
    .await
    .unwrap();
    db.apply_host_report(intruder, &full_report(vec![]))
        .await
        .unwrap();

    let after = get(db, &w).await;
    assert_eq!(after.power, before.power);
    assert_eq!(after.observed_power, None);
    assert_eq!(after.observed_reboot_generation, 0);
    assert_eq!(after.fault, None);
    assert_eq!(after.launched_at, None);
    assert_eq!(after.host, Some(w.host));
    assert!(
        db.server(w.project, doomed.id).await.unwrap().deleting,
        "host A's deleting server survives host B's report"
    );
}

/// Walks one server through its life, checking the status users see.
pub(crate) async fn status_follows_the_server_lifecycle(db: &Db) {
    let w = world(db).await;
    let now = Utc::now();
    let observe = |power: ObservedPower, generation: u64| InstanceReport {
        reboot_generation: generation,
        launched_at: matches!(power, ObservedPower::Running).then_some(now),
        ..report(w.server, power)
    };
    let apply = |inst: InstanceReport| async move {
        db.apply_host_report(w.host, &full_report(vec![inst]))
            .await
            .unwrap();
        get(db, &w).await.status()
    };

    assert_eq!(get(db, &w).await.status(), ServerStatus::Building);
    assert_eq!(
        apply(observe(ObservedPower::Creating, 0)).await,
        ServerStatus::Building
    );
    assert_eq!(
        apply(observe(ObservedPower::Running, 0)).await,
        ServerStatus::Running
    );

    // Stop: stopping until the host confirms.
    let s = db
        .set_power(w.project, w.server, PowerState::Stopped)
        .await
        .unwrap();
    assert_eq!(s.status(), ServerStatus::Stopping);
    assert_eq!(
        apply(observe(ObservedPower::Stopped, 0)).await,
        ServerStatus::Stopped
    );

    // Start again: shown stopped until the host confirms.
    let s = db
        .set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();
    assert_eq!(s.status(), ServerStatus::Stopped);
    assert_eq!(
        apply(observe(ObservedPower::Running, 0)).await,
        ServerStatus::Running
    );

    // Reboot: rebooting until the host has carried it out.
    let s = db.request_reboot(w.project, w.server).await.unwrap();
    assert_eq!(s.status(), ServerStatus::Rebooting);
    assert_eq!(
        apply(observe(ObservedPower::Running, 0)).await,
        ServerStatus::Rebooting
    );
    assert_eq!(
        apply(observe(ObservedPower::Running, 1)).await,
        ServerStatus::Running
    );

    // A stop requested while the host is still creating it.
    db.set_power(w.project, w.server, PowerState::Stopped)
        .await
        .unwrap();
    assert_eq!(
        apply(observe(ObservedPower::Creating, 1)).await,
        ServerStatus::Stopping
    );
    db.set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();

    // A failure shows as an error whatever was asked for.
    assert_eq!(
        apply(InstanceReport {
            fault: Some("qemu exited".into()),
            ..observe(ObservedPower::Error, 1)
        })
        .await,
        ServerStatus::Error
    );
    db.set_power(w.project, w.server, PowerState::Stopped)
        .await
        .unwrap();
    assert_eq!(get(db, &w).await.status(), ServerStatus::Error);
    db.set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();
    assert_eq!(
        apply(observe(ObservedPower::Running, 1)).await,
        ServerStatus::Running
    );

    // Deleting wins over everything, even a fault.
    db.mark_deleting(w.project, w.server).await.unwrap();
    assert_eq!(get(db, &w).await.status(), ServerStatus::Deleting);
    assert_eq!(
        apply(InstanceReport {
            fault: Some("stuck".into()),
            ..observe(ObservedPower::Error, 1)
        })
        .await,
        ServerStatus::Deleting
    );
    db.apply_host_report(w.host, &full_report(vec![]))
        .await
        .unwrap();
    assert_not_found(db.server(w.project, w.server).await, "deleted server");
}

/// What a server's guest is configured with is stored as given.
pub(crate) async fn server_guest_config_round_trips(db: &Db) {
    let w = world(db).await;
    let plain = get(db, &w).await;
    assert_eq!(plain.key_name, None);
    assert_eq!(plain.key_data, None);
    assert_eq!(plain.user_data, None);
    assert!(!plain.config_drive);

    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBexample alice@laptop";
    let user_data = "I2Nsb3VkLWNvbmZpZwpob3N0bmFtZTogd2ViCg==".to_string();
    let configured = db
        .create_server(&NewServer {
            key_name: Some("laptop"),
            key_data: Some(key),
            user_data: Some(user_data.clone()),
            config_drive: true,
            ..new_server(w.project, "configured", w.image, w.host, (1, 128, 1))
        })
        .await
        .unwrap();
    for s in [
        configured.clone(),
        db.server(w.project, configured.id).await.unwrap(),
    ] {
        assert_eq!(s.key_name.as_deref(), Some("laptop"));
        assert_eq!(s.key_data.as_deref(), Some(key));
        assert_eq!(s.user_data.as_deref(), Some(user_data.as_str()));
        assert!(s.config_drive);
    }
}

pub(crate) async fn server_names_with_one_dns_label_conflict(db: &Db) {
    let alice = user(db, "alice").await;
    let bob = user(db, "bob").await;
    let img = image(db, alice.project, "img").await;
    let h = host(db, "host-a").await;
    let first = db
        .create_server(&new_server(alice.project, "my-server", img, h, (1, 128, 1)))
        .await
        .unwrap();
    // `my server` would be `my-server.alice.<zone>` too: refused, naming
    // the server that has the label; nothing is created.
    match db
        .create_server(&new_server(alice.project, "my server", img, h, (1, 128, 1)))
        .await
    {
        Err(StoreError::Conflict(m)) => {
            assert!(m.contains("'my-server'"), "{m}");
            assert!(m.contains(&first.id.to_string()), "{m}");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_conflict(
        db.create_server(&new_server(alice.project, "MY_SERVER", img, h, (1, 128, 1)))
            .await,
        "a name differing in case and punctuation",
    );
    assert_eq!(db.list_servers(alice.project).await.unwrap().len(), 1);
    // Positive controls: another label in the project, the same name in
    // another project.
    db.create_server(&new_server(
        alice.project,
        "my-server-2",
        img,
        h,
        (1, 128, 1),
    ))
    .await
    .unwrap();
    db.create_server(&new_server(bob.project, "my server", img, h, (1, 128, 1)))
        .await
        .unwrap();
}
