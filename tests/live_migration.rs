//! Live migration across hosts (multi-host harness): a running server moves
//! to another host with its RAM and disk; the guest never restarts (its
//! own counter carries on, its QEMU on the source is the same process
//! until the switch-over), the move is a `migrated` event with the downtime
//! QEMU measured, and a target killed half-way leaves the server running
//! on its source (the same QEMU) and nothing on the target. The first test
//! moves the server with `nubis host drain SOURCE --wait`, so draining is
//! tested end to end with a real live migration.
//!
//! Vantage point for the ping: the guest itself, pinging its gateway. Every
//! host has the network's gateway address (with one MAC on all hosts, see
//! the VXLAN overlay), so the guest reaches "its" gateway before and after
//! the move without re-learning anything, and the replies never cross
//! hosts. A host namespace could not serve: each host owns that same
//! gateway address, so a guest's replies to a host always stay on the
//! guest's own host.
//!
//! Vantage point for the SSH session: for the same reason, a second guest
//! of the network ("client"), kept on another host than the mover by an
//! anti-affinity server group, on a third host so that the session crosses
//! hosts over VXLAN before and after the move. It runs dropbear's
//! `dbclient` (shipped in the tiny guest) with a key made here, and echoes
//! each line of a counter the mover prints every second to its console;
//! a session that broke would print a marker, a new one would count from 1.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use support::multihost::{self, MultiHost, Options};

const BOOT: Duration = Duration::from_secs(300);
const MOVE: Duration = Duration::from_secs(300);

/// The guest's user data: a counter on the console every second (a guest
/// that restarted would begin again at 1), with the replies its pings to
/// its gateway (5 a second) got so far.
const SCRIPT: &str = r#"#!/bin/sh
gw=$(ip route | awk '/^default/ {print $3}')
ping -i 0.2 "$gw" > /tmp/ping.log 2>&1 &
i=0
while true; do
    i=$((i + 1))
    sent=$(tail -n 1 /tmp/ping.log | sed -n 's/.*seq=\([0-9]*\).*/\1/p')
    got=$(grep -c 'seq=' /tmp/ping.log)
    echo "tick-$i sent-${sent:-0} got-$got"
    sleep 1
done
"#;

/// (tick, ping sent, ping replies) of each `tick-` line in a console log.
fn ticks(log: &str) -> Vec<(u64, u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("tick-")? + 5..];
            let mut parts = rest.split_whitespace();
            let tick = parts.next()?.parse().ok()?;
            let sent = parts.next()?.strip_prefix("sent-")?.parse().ok()?;
            let got = parts.next()?.strip_prefix("got-")?.parse().ok()?;
            Some((tick, sent, got))
        })
        .collect()
}

/// Pids of QEMUs of server `id` running in host `i`'s network namespace.
fn qemus_on(cloud: &MultiHost, i: usize, id: &str) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata(format!("/var/run/netns/{}", cloud.ns(i))).unwrap();
    support::qemu_pids(id)
        .into_iter()
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev())
        })
        .collect()
}

/// The lines of host `i`'s agent log about moves and QEMU.
fn agent_log(cloud: &MultiHost, i: usize) -> String {
    cloud.hosts[i]
        .log()
        .lines()
        .filter(|l| {
            ["migrat", "live", "arriv", "guest", "WARN", "ERROR"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn events(cloud: &MultiHost, id: &str) -> Vec<Value> {
    let (s, e) = cloud
        .call(Method::GET, &format!("/v1/servers/{id}/events"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    e.as_array().cloned().unwrap_or_default()
}

fn has_event(events: &[Value], kind: &str) -> bool {
    events.iter().any(|e| e["kind"] == kind)
}

/// A running server with the ticking script, its host and QEMU pid;
/// `extra` adds fields to the create (a key, scheduler hints).
async fn ticking_server(cloud: &MultiHost, name: &str, extra: Value) -> (String, usize, i32) {
    use base64::Engine;
    let user_data = base64::engine::general_purpose::STANDARD.encode(SCRIPT);
    let mut body = json!({
        "name": name, "image": "tiny", "flavor": "tiny",
        "user_data": user_data, "config_drive": true,
    });
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    let (id, _) = cloud.create_server(body).await;
    cloud.wait_status(&id, "running", BOOT).await;
    cloud.wait_console(&id, "user-data: tick-3 ", BOOT).await;
    let host = cloud.host_of(&id).await.expect("placed");
    let pids = qemus_on(cloud, host, &id);
    assert_eq!(pids.len(), 1, "one QEMU on the source: {pids:?}");
    (id, host, pids[0])
}

/// The client guest's user data: holds an SSH session to `ip` (the mover)
/// open, its remote command printing `ssh-N` every second; each line is
/// echoed with this guest's clock (`ssh-N at SECONDS`). Connection attempts
/// before the first line are retried; once a session ran, its end prints
/// `ssh-session-ended`. Keepalives every 10 s (`-K`): dbclient gives a
/// session up after 3 unanswered, so a peer that vanished without a word
/// (no FIN) ends it too, rather than leaving it hanging unseen.
fn client_script(key_b64: &str, ip: &str) -> String {
    format!(
        r#"#!/bin/sh
base64 -d > /root/mover-key <<'KEY'
{key_b64}
KEY
chmod 600 /root/mover-key
tries=0
while true; do
    dbclient -y -y -K 10 -i /root/mover-key root@{ip} \
        'i=0; while true; do i=$((i + 1)); echo "ssh-$i"; sleep 1; done' 2>&1 |
        while read -r l; do
            case "$l" in ssh-*) : > /tmp/session ;; esac
            echo "$l at $(date +%s)"
        done
    [ -e /tmp/session ] && break
    tries=$((tries + 1))
    [ "$tries" -ge 60 ] && break
    echo "ssh-retry $tries"
    sleep 2
done
echo "ssh-session-ended"
"#
    )
}

/// (N, arrival second) of each `ssh-N at T` line in a console log.
fn ssh_lines(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("user-data: ssh-")? + 15..];
            let (n, at) = rest.split_once(" at ")?;
            Some((n.parse().ok()?, at.trim().parse().ok()?))
        })
        .collect()
}

/// A dropbear ed25519 key made on the test host: (the private key file's
/// bytes, base64; its OpenSSH public key line).
fn dropbear_key(dir: &std::path::Path) -> (String, String) {
    use base64::Engine;
    let file = dir.join("mover-key.dropbear");
    let out = std::process::Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(&file)
        .output()
        .expect("dropbearkey (package dropbear-bin)");
    assert!(out.status.success(), "dropbearkey: {out:?}");
    let out = std::process::Command::new("dropbearkey")
        .args(["-y", "-f"])
        .arg(&file)
        .output()
        .expect("dropbearkey -y");
    assert!(out.status.success(), "dropbearkey -y: {out:?}");
    let public = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("ssh-ed25519 "))
        .expect("a public key line")
        .to_owned();
    let private = std::fs::read(&file).expect("the key file");
    (
        base64::engine::general_purpose::STANDARD.encode(private),
        public,
    )
}

async fn live_migrate(cloud: &MultiHost, id: &str, to: usize) {
    let (s, b) = cloud
        .call(
            Method::POST,
            &format!("/v1/servers/{id}/live-migrate"),
            Some(json!({"host": multihost::host_name(to)})),
        )
        .await;
    assert!(s.is_success(), "live-migrate: {s} {b}");
}

#[test]
fn a_running_server_moves_live_and_keeps_running() {
    multihost::run("live-mig", Options::hosts(3), |mut cloud| async move {
        cloud.create_admin_and_login("root", "root-password").await;
        cloud.upload_tiny_image();
        let (key_b64, public_key) = dropbear_key(cloud.controller_path());
        let (s, b) = cloud
            .call(
                Method::POST,
                "/v1/keypairs",
                Some(json!({"name": "mover-key", "public_key": public_key})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let (s, group) = cloud
            .call(
                Method::POST,
                "/v1/server-groups",
                Some(json!({"name": "apart", "policy": "anti-affinity"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{group}");
        let hints = json!({"group": group["id"]});
        let (id, source, source_pid) = ticking_server(
            &cloud,
            "mover",
            json!({"key_name": "mover-key", "scheduler_hints": hints}),
        )
        .await;
        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        let (_, server) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        let ip = server["addresses"][0]["ip"].as_str().expect("an address");

        // The client, on another host, holds an SSH session to the mover.
        use base64::Engine;
        let user_data =
            base64::engine::general_purpose::STANDARD.encode(client_script(&key_b64, ip));
        let (client, _) = cloud
            .create_server(json!({
                "name": "client", "image": "tiny", "flavor": "tiny",
                "user_data": user_data, "config_drive": true,
                "scheduler_hints": hints,
            }))
            .await;
        cloud.wait_status(&client, "running", BOOT).await;
        let client_host = cloud.host_of(&client).await.expect("placed");
        assert_ne!(client_host, source, "anti-affinity keeps them apart");
        cloud
            .wait_console(&client, "user-data: ssh-3 at ", BOOT)
            .await;

        let before = ticks(&cloud.console_log(&id).await);
        let &(last_tick, _, _) = before.last().expect("ticks before");
        let ssh_before = ssh_lines(&cloud.console_log(&client).await);

        // Drain the mover's host: it is disabled and the mover moves live.
        let source_id = cloud.host_id(source).await;
        let out = cloud.cli(&["host", "drain", &multihost::host_name(source), "--wait"]);
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!(
            "host drain: {printed}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            printed.contains(&format!("{id}: live migration to host ")),
            "{printed}"
        );
        assert!(printed.contains("drained, no servers left"), "{printed}");
        let (_, host) = cloud
            .call(Method::GET, &format!("/v1/hosts/{source_id}"), None)
            .await;
        assert_eq!(
            (
                host["enabled"].clone(),
                host["disabled_reason"].clone(),
                host["instances"].clone()
            ),
            (json!(false), json!("draining"), json!(0)),
            "the drained host is disabled and empty: {host}"
        );
        let target = cloud.host_of(&id).await.expect("placed");
        assert_ne!(target, source);
        eprintln!("mover: host {source} -> {target}; client on host {client_host}");

        let deadline = std::time::Instant::now() + MOVE;
        let migrated = loop {
            let events = events(&cloud, &id).await;
            if let Some(e) = events.iter().find(|e| e["kind"] == "migrated") {
                break e.clone();
            }
            if has_event(&events, "migration_failed") || std::time::Instant::now() > deadline {
                panic!(
                    "no migrated event: {events:?}\nsource:\n{}\ntarget:\n{}",
                    agent_log(&cloud, source),
                    agent_log(&cloud, target)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        eprintln!("migrated: {}", migrated["message"]);
        let message = migrated["message"].as_str().unwrap();
        let downtime: u64 = message
            .split("downtime ")
            .nth(1)
            .and_then(|d| d.split(' ').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("no downtime in {message:?}"));
        assert!(downtime > 0, "QEMU measured a pause: {message}");
        // The status follows the target's reports: paused until its
        // agent resumed the arrived guest, then running.
        cloud.wait_status(&id, "running", MOVE).await;
        let (_, server) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(
            server["host"],
            cloud.host_id(target).await.as_str(),
            "{server}"
        );

        // The guest runs on the target, where it left off: its counter
        // carries on (a boot would start it at 1 again) ...
        let wanted = format!("user-data: tick-{} ", last_tick + 5);
        cloud.wait_console(&id, &wanted, MOVE).await;
        let after = ticks(&cloud.console_log(&id).await);
        assert!(
            after.iter().all(|(t, _, _)| *t > last_tick),
            "the counter went on, never restarting: {after:?}"
        );
        assert!(
            !cloud.console_log(&id).await.contains("boot-count:"),
            "no boot on the target"
        );
        let pids = qemus_on(&cloud, target, &id);
        assert_eq!(pids.len(), 1, "one QEMU on the target: {pids:?}");
        support::wait_for("the source QEMU to end", MOVE, || async {
            qemus_on(&cloud, source, &id).is_empty().then_some(())
        })
        .await;
        assert!(!qemus_on(&cloud, source, &id).contains(&source_pid));
        // ... and its pings to its gateway lost at most a few replies over
        // the move (5 a second; the guest paused for `downtime` ms).
        let (_, sent_before, got_before) = *before.last().unwrap();
        let (_, sent_after, got_after) = *after.last().unwrap();
        let lost = (sent_after - sent_before) - (got_after - got_before);
        eprintln!(
            "pings over the move: {} sent, {lost} lost",
            sent_after - sent_before
        );
        assert!(sent_after > sent_before, "pings went on");
        assert!(lost <= 10, "lost {lost} ping replies over the move");
        // The migration record has the same downtime.
        let (s, moves) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}/migrations"), None)
            .await;
        assert!(s.is_success(), "migrations: {s} {moves}");
        let live = moves
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["kind"] == "live");
        assert_eq!(
            live.map(|m| m["downtime_ms"].clone()),
            Some(json!(downtime)),
            "{moves}"
        );

        // The SSH session lived through the move: the mover's counter, one
        // session (a new one would count from 1 again), goes on arriving at
        // the client past the move, and the session never ended.
        let at_move = ssh_lines(&cloud.console_log(&client).await)
            .last()
            .map_or(0, |l| l.0);
        cloud
            .wait_console(
                &client,
                &format!("user-data: ssh-{} at ", at_move + 5),
                MOVE,
            )
            .await;
        let log = cloud.console_log(&client).await;
        let session = ssh_lines(&log);
        assert!(
            session.windows(2).all(|w| w[1].0 == w[0].0 + 1),
            "one session counting on: {session:?}"
        );
        assert!(
            session.len() > ssh_before.len() + 5,
            "the counter rose past the move: {} lines before, {} after",
            ssh_before.len(),
            session.len()
        );
        assert!(
            !log.contains("ssh-session-ended"),
            "the session ended: {log}"
        );
        let stall = session
            .windows(2)
            .map(|w| w[1].1.saturating_sub(w[0].1))
            .max()
            .unwrap_or(0);
        eprintln!(
            "ssh session: {} lines, longest pause {stall} s",
            session.len()
        );
        // Positive control of the marker: the mover powered off (no FIN
        // reaches the client) ends the session within dbclient's keepalive
        // limit, and the client says so.
        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/stop"), None)
            .await;
        assert!(s.is_success(), "stop: {s} {b}");
        cloud
            .wait_console(&client, "user-data: ssh-session-ended", MOVE)
            .await;
    });
}

#[test]
fn a_target_killed_half_way_leaves_the_server_on_its_source() {
    multihost::run("live-mig-fail", Options::hosts(2), |mut cloud| async move {
        cloud.create_admin_and_login("root", "root-password").await;
        cloud.upload_tiny_image();
        let (id, source, source_pid) = ticking_server(&cloud, "stayer", json!({})).await;
        let target = 1 - source;
        let source_id = cloud.host_id(source).await;

        live_migrate(&cloud, &id, target).await;
        // The target's QEMU waits for the guest: kill it.
        let pid = support::wait_for("the target's QEMU", MOVE, || async {
            qemus_on(&cloud, target, &id).first().copied()
        })
        .await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        support::wait_for("the migration_failed event", MOVE, || async {
            let events = events(&cloud, &id).await;
            assert!(!has_event(&events, "migrated"), "{events:?}");
            has_event(&events, "migration_failed").then_some(())
        })
        .await;
        let (_, server) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(server["host"], source_id.as_str(), "{server}");
        // The same QEMU runs the guest on the source, which goes on ticking.
        assert_eq!(qemus_on(&cloud, source, &id), vec![source_pid]);
        let last = ticks(&cloud.console_log(&id).await)
            .last()
            .map(|t| t.0)
            .unwrap_or(0);
        cloud
            .wait_console(&id, &format!("user-data: tick-{} ", last + 3), MOVE)
            .await;
        cloud.wait_status(&id, "running", MOVE).await;
        // Nothing is left on the target: no QEMU, no instance directory.
        support::wait_for("the target to be clean", MOVE, || async {
            let dir = cloud.hosts[target].agent_dir().join("instances").join(&id);
            let clean = qemus_on(&cloud, target, &id).is_empty() && !dir.exists();
            clean.then_some(())
        })
        .await;
    });
}
