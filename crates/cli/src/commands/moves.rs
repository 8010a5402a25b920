//! `nubis server migrate|live-migrate|migrations` and `nubis host evacuate`.

use super::servers::find;
use crate::client::ApiClient;
use nubis_api::hosts::HostSummary;
use nubis_api::migrations::{Evacuation, MigrateServer, Migration, MigrationState};
use std::time::Duration;

/// `nubis host evacuate`: restarts a down host's servers elsewhere.
pub async fn evacuate(client: &ApiClient, host: &HostSummary, json: bool) -> anyhow::Result<()> {
    let (id, reference) = (host.id, &host.name);
    let done: Evacuation = client
        .post(&format!("/v1/hosts/{id}/evacuate"), &serde_json::json!({}))
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(());
    }
    for m in &done.migrations {
        println!("{}: evacuating to host {}", m.server, m.target_host);
    }
    for u in &done.unplaced {
        println!("{}: not moved: {}", u.server, u.reason);
    }
    if done.migrations.is_empty() && done.unplaced.is_empty() {
        println!("{reference}: no servers to evacuate.");
    }
    Ok(())
}

/// `nubis server migrate` (`live`: `live-migrate`), optionally waiting
/// until the move ends.
pub async fn migrate(
    client: &ApiClient,
    reference: &str,
    host: Option<String>,
    live: bool,
    wait: bool,
    json: bool,
) -> anyhow::Result<()> {
    let server = find(client, reference).await?;
    let action = if live { "live-migrate" } else { "migrate" };
    let mut migration: Migration = client
        .post(
            &format!("/v1/servers/{}/{action}", server.id),
            &MigrateServer { host },
        )
        .await?;
    if wait {
        // Generous: a disk copy takes as long as the disk is big.
        for _ in 0..1800 {
            if migration.state != MigrationState::Running {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let all: Vec<Migration> = client
                .get(&format!("/v1/servers/{}/migrations", server.id))
                .await?;
            if let Some(m) = all.into_iter().find(|m| m.id == migration.id) {
                migration = m;
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&migration)?);
        return Ok(());
    }
    match migration.state {
        MigrationState::Running => println!(
            "{}: moving to host {} ({action} requested).",
            server.name, migration.target_host
        ),
        MigrationState::Done => println!("{}: now on host {}.", server.name, migration.target_host),
        MigrationState::Failed => anyhow::bail!(
            "{}: the move failed: {}",
            server.name,
            migration.error.as_deref().unwrap_or("no reason given")
        ),
    }
    Ok(())
}
