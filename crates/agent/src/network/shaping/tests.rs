use super::*;
use nubis_api::bandwidth::Bandwidth;
use std::process::Command;

fn limits(inbound: Option<u32>, outbound: Option<u32>, suspended: bool) -> NetworkLimits {
    NetworkLimits {
        bandwidth: Bandwidth {
            inbound: inbound.map(RateLimit::average),
            outbound: outbound.map(RateLimit::average),
        },
        suspended,
    }
}

#[test]
fn tbf_has_a_burst_and_queue_that_let_tcp_reach_the_rate() {
    let args = tbf_args("ntap-0000abcd", &RateLimit::average(10)).join(" ");
    assert_eq!(
        args,
        "qdisc replace dev ntap-0000abcd root tbf rate 10000000bit burst 65536 limit 190536"
    );
    // Fast links get 5 ms of burst; a peak adds the second bucket.
    let fast = RateLimit {
        average_mbit: 1000,
        peak_mbit: Some(2000),
        burst_kib: None,
    };
    let args = tbf_args("t", &fast).join(" ");
    assert!(
        args.contains("burst 625000 limit 13125000 peakrate 2000000000bit mtu 250000"),
        "{args}"
    );
    // The asked-for burst is used as is; a peak equal to the average is none.
    let given = RateLimit {
        average_mbit: 10,
        peak_mbit: Some(10),
        burst_kib: Some(256),
    };
    let args = tbf_args("t", &given).join(" ");
    assert!(args.contains("burst 262144 "), "{args}");
    assert!(!args.contains("peakrate"), "{args}");
}

#[test]
fn police_filter_matches_everything() {
    let args = police_args("ntap-1", &RateLimit::average(10)).join(" ");
    assert_eq!(
        args,
        "filter add dev ntap-1 parent ffff: protocol all prio 1 u32 match u32 0 0 \
         police rate 10000000bit burst 131072 mtu 65535 drop flowid :1"
    );
}

#[test]
fn ruleset_follows_the_limits() {
    let tap = "ntap-0000abcd";
    let head = "table netdev nubis_0000abcd\ndelete table netdev nubis_0000abcd\n";
    // Nothing to do in nftables: the table goes.
    assert_eq!(
        ruleset(tap, &limits(None, None, false), Outbound::Nftables),
        head
    );
    assert_eq!(
        ruleset(tap, &limits(Some(5), Some(5), false), Outbound::Police),
        head
    );
    let r = ruleset(tap, &limits(Some(5), Some(10), false), Outbound::Nftables);
    assert!(r.starts_with(head), "{r}");
    assert!(
        r.contains("type filter hook ingress device \"ntap-0000abcd\" priority filter; policy accept;\n        limit rate over 1250000 bytes/second drop\n"),
        "{r}"
    );
    assert!(!r.contains("egress"), "{r}");
    let peak = NetworkLimits {
        bandwidth: Bandwidth {
            inbound: None,
            outbound: Some(RateLimit {
                average_mbit: 10,
                peak_mbit: Some(20),
                burst_kib: Some(64),
            }),
        },
        suspended: false,
    };
    let r = ruleset(tap, &peak, Outbound::Nftables);
    assert!(
        r.contains("limit rate over 2500000 bytes/second drop\n        limit rate over 1250000 bytes/second burst 65536 bytes drop\n"),
        "{r}"
    );
    // Suspended: everything dropped both ways, limits or not.
    for outbound in [Outbound::Nftables, Outbound::Police] {
        let r = ruleset(tap, &limits(None, Some(10), true), outbound);
        assert!(r.contains("hook ingress device \"ntap-0000abcd\""), "{r}");
        assert!(r.contains("hook egress device \"ntap-0000abcd\""), "{r}");
        assert_eq!(r.matches("        drop\n").count(), 2, "{r}");
        assert!(!r.contains("limit"), "{r}");
    }
    assert_eq!(table_tap("nubis_0000abcd").as_deref(), Some(tap));
    assert_eq!(table_name(tap), "nubis_0000abcd");
    assert_eq!(table_tap("other"), None);
}

/// Runs `body` on a thread inside a fresh network namespace (never the
/// root namespace's networking), with a runtime whose commands run there
/// too; removes the namespace afterwards.
fn in_scratch_netns<F, Fut>(test: &str, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let ns = format!("nubis-shape-{test}-{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot create a network namespace in CI"
        );
        eprintln!("no network namespaces here: skipping");
        return;
    }
    let name = ns.clone();
    let result = std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/var/run/netns/{name}")).expect("netns");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body());
    })
    .join();
    let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn sh(prog: &str, args: &[&str]) -> String {
    run(prog, args).await.expect(prog)
}

async fn make_tap(tap: &str) {
    sh("ip", &["tuntap", "add", "dev", tap, "mode", "tap"]).await;
    sh("ip", &["link", "set", tap, "up"]).await;
}

async fn table(tap: &str) -> Option<String> {
    run("nft", &["list", "table", "netdev", &table_name(tap)])
        .await
        .ok()
}

#[test]
fn limits_are_applied_changed_and_cleared_on_a_real_tap() {
    in_scratch_netns("apply", || async {
        let tap = "ntap-5eed0001";
        make_tap(tap).await;
        let outbound = probe(tap).await;
        eprintln!("outbound limiting here: {outbound:?}");
        let qdisc = || async move { sh("tc", &["qdisc", "show", "dev", tap]).await };
        assert!(
            !qdisc().await.contains("ingress"),
            "the probe leaves no trace"
        );

        apply(tap, &limits(Some(10), Some(10), false), outbound)
            .await
            .unwrap();
        let q = qdisc().await;
        assert!(q.contains("tbf") && q.contains("rate 10Mbit"), "{q}");
        match outbound {
            Outbound::Nftables => {
                let t = table(tap).await.expect("the table exists");
                assert!(t.contains("hook ingress device \"ntap-5eed0001\""), "{t}");
                assert!(
                    t.contains("limit rate over 1250000 bytes/second drop"),
                    "{t}"
                );
            }
            Outbound::Police => {
                let f = sh("tc", &["filter", "show", "dev", tap, "ingress"]).await;
                assert!(f.contains("police"), "{f}");
                assert!(table(tap).await.is_none());
            }
        }
        // Again: nothing changes, nothing fails.
        apply(tap, &limits(Some(10), Some(10), false), outbound)
            .await
            .unwrap();
        assert_eq!(qdisc().await, q);

        // Changed live: 4 Mbit/s and the peak; then unlimited inbound.
        let changed = NetworkLimits {
            bandwidth: Bandwidth {
                inbound: Some(RateLimit {
                    average_mbit: 4,
                    peak_mbit: Some(8),
                    burst_kib: Some(128),
                }),
                outbound: Some(RateLimit::average(4)),
            },
            suspended: false,
        };
        apply(tap, &changed, Outbound::Nftables).await.unwrap();
        let q = qdisc().await;
        assert!(
            q.contains("rate 4Mbit") && q.contains("peakrate 8Mbit"),
            "{q}"
        );
        let t = table(tap).await.unwrap();
        assert!(
            t.contains("limit rate over 500000 bytes/second drop"),
            "{t}"
        );
        assert!(!t.contains("1250000"), "{t}");

        apply(tap, &limits(None, Some(4), false), Outbound::Nftables)
            .await
            .unwrap();
        assert!(!qdisc().await.contains("tbf"));

        // Suspended: both directions dropped.
        apply(tap, &limits(Some(4), Some(4), true), Outbound::Nftables)
            .await
            .unwrap();
        let t = table(tap).await.unwrap();
        assert!(
            t.contains("hook ingress") && t.contains("hook egress"),
            "{t}"
        );
        assert!(!t.contains("limit"), "{t}");

        clear(tap).await.unwrap();
        assert!(table(tap).await.is_none());
        let q = qdisc().await;
        assert!(!q.contains("tbf") && !q.contains("ingress"), "{q}");
        clear(tap).await.unwrap();
    });
}

#[test]
fn stray_tables_of_gone_taps_are_removed() {
    in_scratch_netns("stray", || async {
        let (kept, gone) = ("ntap-5eed0002", "ntap-5eed0003");
        for tap in [kept, gone] {
            make_tap(tap).await;
            apply(tap, &limits(None, None, true), Outbound::Nftables)
                .await
                .unwrap();
        }
        sh("ip", &["link", "del", gone]).await;
        // A table that is not ours stays.
        run_with_input("nft", &["-f", "-"], "table netdev other {}\n")
            .await
            .unwrap();
        remove_stray_tables(&HashSet::from([kept.to_owned()]))
            .await
            .unwrap();
        assert!(table(kept).await.is_some());
        assert!(table(gone).await.is_none());
        let all = sh("nft", &["list", "tables", "netdev"]).await;
        assert!(all.contains("table netdev other"), "{all}");
        // Clearing a TAP that is gone is fine too.
        clear(gone).await.unwrap();
    });
}

#[test]
fn deleting_a_qdisc_that_is_not_there_is_no_failure() {
    // What tc prints when the qdisc (or device) is already gone...
    assert!(qdisc_already_absent(
        "tc qdisc del dev ntap-1 root failed: Error: Cannot delete qdisc with handle of zero."
    ));
    assert!(qdisc_already_absent(
        "tc qdisc del dev ntap-1 ingress failed: Error: Cannot find specified qdisc on specified device."
    ));
    assert!(qdisc_already_absent(
        "tc qdisc del dev ntap-1 root failed: Cannot find device \"ntap-1\""
    ));
    // ...and real failures, which still count.
    assert!(!qdisc_already_absent(
        "tc qdisc del dev ntap-1 root failed: RTNETLINK answers: Operation not permitted"
    ));
    assert!(!qdisc_already_absent(
        "tc did not finish within 30 s; killed"
    ));
}

#[test]
fn overlapping_removals_of_a_limited_tap_both_succeed() {
    in_scratch_netns("twice", || async {
        let tap = "ntap-5eed0004";
        make_tap(tap).await;
        apply(tap, &limits(Some(10), None, false), Outbound::Nftables)
            .await
            .unwrap();
        // The instance's delete and the stray-TAP sweep at the same time
        // (as when a limited server is deleted): both saw the tbf, one
        // removes it first.
        let (a, b) = tokio::join!(clear(tap), clear(tap));
        a.unwrap();
        b.unwrap();
        assert!(!sh("tc", &["qdisc", "show", "dev", tap])
            .await
            .contains("tbf"));
        // Removing the absent root qdisc directly: no failure either...
        delete_qdisc(tap, "root").await.unwrap();
        delete_qdisc(tap, "ingress").await.unwrap();
        // ...while a real error is still one (positive control).
        assert!(delete_qdisc(tap, "no-such-parent").await.is_err());
    });
}
