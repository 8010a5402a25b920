//! `nubis host drain`: disable a host and move every server off it (the
//! controller starts the moves: running servers live, stopped ones cold);
//! with `--wait`, follow them until the host is empty.

use super::wait::Progress;
use crate::client::{failure_status, ApiClient};
use anyhow::bail;
use nubis_api::hosts::HostSummary;
use nubis_api::migrations::{Drain, DrainHost, Migration, MigrationState};
use nubis_api::HostId;
use std::collections::HashMap;
use std::time::Duration;

/// How long `--wait` follows a drain: live migrations under emulation and
/// disk copies take minutes each, and they run one after the other per host.
const DRAIN_WAIT_LIMIT: Duration = Duration::from_secs(3600);

/// How often the moves and the host are polled.
const POLL: Duration = Duration::from_secs(1);

/// Host names by id, for readable lines.
struct Names(HashMap<HostId, String>);

impl Names {
    async fn fetch(client: &ApiClient) -> anyhow::Result<Self> {
        let hosts: Vec<HostSummary> = client.get("/v1/hosts").await?;
        Ok(Self(hosts.into_iter().map(|h| (h.id, h.name)).collect()))
    }

    fn of(&self, id: HostId) -> String {
        self.0.get(&id).cloned().unwrap_or_else(|| id.to_string())
    }
}

/// One line per server of a drain's answer.
fn describe(done: &Drain, names: &Names) -> Vec<String> {
    let mut lines = Vec::new();
    for m in &done.started {
        lines.push(format!(
            "{}: {} migration to host {} started",
            m.server,
            m.kind.as_str(),
            names.of(m.target_host)
        ));
    }
    for m in &done.moving {
        lines.push(format!(
            "{}: already moving ({}) to host {}",
            m.server,
            m.kind.as_str(),
            names.of(m.target_host)
        ));
    }
    for s in &done.skipped {
        lines.push(format!("{}: stays: {}", s.server, s.reason));
    }
    lines
}

/// Why a failed move failed, in one line.
fn failure_line(m: &Migration, names: &Names) -> String {
    format!(
        "the {} migration of server {} to host {} failed: {}",
        m.kind.as_str(),
        m.server,
        names.of(m.target_host),
        m.error.as_deref().unwrap_or("no reason given")
    )
}

/// `nubis host drain HOST [--reason R] [--wait]`.
pub async fn drain(
    client: &ApiClient,
    host: &HostSummary,
    reason: Option<String>,
    wait: bool,
    json: bool,
) -> anyhow::Result<()> {
    let path = format!("/v1/hosts/{}/drain", host.id);
    let done: Drain = client.post(&path, &DrainHost { reason }).await?;
    let names = Names::fetch(client).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!(
            "Draining host '{}' (no new servers: {}).",
            host.name,
            done.host.disabled_reason.as_deref().unwrap_or("disabled")
        );
        for line in describe(&done, &names) {
            println!("{line}");
        }
        if done.started.is_empty() && done.moving.is_empty() && done.skipped.is_empty() {
            println!("No servers on it.");
        }
    }
    if wait {
        follow(client, host, &path, done, &names).await?;
    }
    Ok(())
}

/// Follows the drain's moves until the host is empty. When they have all
/// ended and servers are left (they were building, or arrived meanwhile),
/// drains again; fails naming the failed moves, or the servers that stay.
async fn follow(
    client: &ApiClient,
    host: &HostSummary,
    path: &str,
    done: Drain,
    names: &Names,
) -> anyhow::Result<()> {
    let mut moves: Vec<Migration> = done.started.into_iter().chain(done.moving).collect();
    let mut progress = Progress::new(&host.name, "draining");
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT_LIMIT;
    loop {
        for m in moves
            .iter_mut()
            .filter(|m| m.state == MigrationState::Running)
        {
            let all: Vec<Migration> = match client
                .get(&format!("/v1/servers/{}/migrations", m.server))
                .await
            {
                Ok(all) => all,
                // Deleted meanwhile: it left the host all the same.
                Err(e) if failure_status(&e) == Some(reqwest::StatusCode::NOT_FOUND) => {
                    m.state = MigrationState::Done;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(now) = all.into_iter().find(|n| n.id == m.id) {
                *m = now;
            }
        }
        let running = moves
            .iter()
            .filter(|m| m.state == MigrationState::Running)
            .count();
        let h: HostSummary = client.get(&format!("/v1/hosts/{}", host.id)).await?;
        progress.show(
            &host.name,
            &format!("{} server(s) on it, {running} moving", h.instances),
        );
        if running == 0 {
            let failed: Vec<String> = moves
                .iter()
                .filter(|m| m.state == MigrationState::Failed)
                .map(|m| failure_line(m, names))
                .collect();
            if !failed.is_empty() {
                drop(progress);
                bail!("host '{}' is not drained: {}", host.name, failed.join("; "));
            }
            if h.instances == 0 {
                let elapsed = progress.elapsed();
                drop(progress);
                println!(
                    "{}: drained, no servers left (after {} s)",
                    host.name,
                    elapsed.as_secs()
                );
                return Ok(());
            }
            let again: Drain = client.post(path, &DrainHost::default()).await?;
            if again.started.is_empty() && again.moving.is_empty() {
                drop(progress);
                let stay: Vec<String> = again
                    .skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.server, s.reason))
                    .collect();
                bail!(
                    "host '{}' is not drained: {} server(s) stay ({})",
                    host.name,
                    h.instances,
                    stay.join("; ")
                );
            }
            moves.extend(again.started.into_iter().chain(again.moving));
        }
        if tokio::time::Instant::now() >= deadline {
            drop(progress);
            bail!(
                "gave up waiting after {} s: host '{}' still has {} server(s), {running} moving \
                 (see 'nubis host show {}')",
                DRAIN_WAIT_LIMIT.as_secs(),
                host.name,
                h.instances,
                host.name
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubis_api::migrations::{MigrationKind, Unplaced};
    use nubis_api::{MigrationId, ServerId};

    fn migration(server: ServerId, kind: MigrationKind, target: HostId) -> Migration {
        Migration {
            id: MigrationId::new(),
            server,
            kind,
            source_host: HostId::new(),
            target_host: target,
            state: MigrationState::Running,
            started_at: chrono::Utc::now(),
            finished_at: None,
            downtime_ms: None,
            error: None,
        }
    }

    #[test]
    fn each_server_gets_a_line_saying_what_happens_to_it() {
        let h2 = HostId::new();
        let names = Names([(h2, "h2".to_owned())].into_iter().collect());
        let (a, b, c) = (ServerId::new(), ServerId::new(), ServerId::new());
        let host: HostSummary = serde_json::from_value(serde_json::json!({
            "id": HostId::new(), "name": "h1", "url": "https://h1:9", "state": "up",
            "enabled": false, "vcpus": 2, "memory_mib": 4096, "disk_gib": 100,
            "accel": "tcg", "cpu_model": "", "instances": 3,
            "allocated": {"vcpus": 0, "memory_mib": 0, "disk_gib": 0},
            "last_seen": chrono::Utc::now(),
        }))
        .unwrap();
        let done = Drain {
            host,
            started: vec![migration(a, MigrationKind::Live, h2)],
            moving: vec![migration(b, MigrationKind::Cold, h2)],
            skipped: vec![Unplaced {
                server: c,
                reason: "it is building".into(),
            }],
        };
        assert_eq!(
            describe(&done, &names),
            [
                format!("{a}: live migration to host h2 started"),
                format!("{b}: already moving (cold) to host h2"),
                format!("{c}: stays: it is building"),
            ]
        );
        let mut failed = migration(a, MigrationKind::Live, HostId::new());
        failed.error = Some("target gone".into());
        let line = failure_line(&failed, &names);
        assert!(
            line.contains(&format!("live migration of server {a}")),
            "{line}"
        );
        assert!(line.ends_with("failed: target gone"), "{line}");
    }
}
