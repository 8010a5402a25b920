//! Moving servers between hosts: cold migration, the start of a live one,
//! evacuation of a down host, and fencing.
//!
//! Every placement carries a generation (`servers.placement_generation`),
//! raised whenever the server is placed on a host. A move places the server
//! on its target at once (so the target's capacity is claimed) and leaves
//! a running `migrations` row: the target's desired state carries an
//! [`Arrival`], the source's a [`Departure`]. The target reports `arrived`
//! for that generation and the move is done; the source's files are then
//! a leftover, which the controller releases. An agent removes nothing it
//! was not told it may ([`release_rules`]), so a host that comes back after
//! its servers were evacuated stops them (fencing) and keeps their files
//! until released.

use crate::live_migration::LiveChange;
use crate::scheduler::{self, Demand, PlacementError, PlacementRequest, PlacementSettings};
use crate::store::hosts::HostLoad;
use crate::store::moves::{ArrivalKind, HostLeftovers, MoveRecord, NewMove, Placement};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use nubis_api::agent::{
    Arrival, Departure, HostReport, MoveProgress, MoveRole, PeerHost, Released,
};
use nubis_api::events::EventKind;
use nubis_api::migrations::{Evacuation, MigrationKind, Unplaced};
use nubis_api::servers::ServerStatus;
use nubis_api::{HostId, ServerId};
use std::collections::{HashMap, HashSet};

/// Why a move was refused.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NoHost(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Chooses where a server moves: the host named (by id or name; never its
/// current one; it must be up), else the scheduler's choice among the other
/// hosts. The one call into placement, so placement changes stay in the
/// scheduler. The choice is claimed in the move's transaction
/// (`Store::start_move`), which refuses a target that has no room (or is
/// disabled) by then, named or not.
pub fn choose_target(
    loads: &[HostLoad],
    source: HostId,
    named: Option<&str>,
    request: &PlacementRequest,
    now: DateTime<Utc>,
    placement: &PlacementSettings,
) -> Result<HostId, MoveError> {
    if let Some(name) = named {
        let host = loads
            .iter()
            .find(|l| l.host.id.to_string() == name || l.host.name == name)
            .ok_or_else(|| MoveError::BadRequest(format!("no host '{name}'")))?;
        if host.host.id == source {
            return Err(MoveError::BadRequest(format!(
                "the server is already on host '{}'",
                host.host.name
            )));
        }
        if !placement.is_up(host.host.last_seen, now) {
            return Err(MoveError::Conflict(format!(
                "host '{}' is down",
                host.host.name
            )));
        }
        return Ok(host.host.id);
    }
    let others: Vec<HostLoad> = loads
        .iter()
        .filter(|l| l.host.id != source)
        .cloned()
        .collect();
    scheduler::candidates(&others, request, placement, now)
        .map(|hosts| hosts[0])
        .map_err(|e| match e {
            PlacementError::NoHosts => MoveError::NoHost("no other host is up".into()),
            e => MoveError::NoHost(e.to_string()),
        })
}

/// The hosts whose desired state a step of move `m` (its start, its end,
/// its failure) changes: its source and target (arrival, departure,
/// release, floating IPs), and every host that has one of the server's
/// networks, whose VXLAN peers name the host the server's ports are on.
/// Only their long polls need waking.
pub async fn hosts_concerned(
    store: &Store,
    m: &nubis_api::migrations::Migration,
) -> Result<HashSet<HostId>, MoveError> {
    let mut hosts = store.hosts_on_networks_of(m.server).await?;
    hosts.extend([m.source_host, m.target_host]);
    Ok(hosts)
}

/// How the target gets the disk, from the two hosts' shared stores.
pub fn arrival_kind(
    kind: MigrationKind,
    source: Option<&str>,
    target: Option<&str>,
) -> ArrivalKind {
    let shared = source.is_some() && source == target;
    match kind {
        MigrationKind::Live => ArrivalKind::Live,
        MigrationKind::Cold if shared => ArrivalKind::Shared,
        MigrationKind::Cold => ArrivalKind::Copy,
        MigrationKind::Evacuate if shared => ArrivalKind::Shared,
        MigrationKind::Evacuate => ArrivalKind::Rebuild,
    }
}

/// Starts moving `server` (already checked to be the caller's): cold when it
/// is stopped, live when it runs.
pub async fn start_migration(
    store: &Store,
    server: ServerId,
    project: nubis_api::ProjectId,
    kind: MigrationKind,
    named_host: Option<&str>,
    now: DateTime<Utc>,
    placement: &PlacementSettings,
) -> Result<MoveRecord, MoveError> {
    let record = store.server(project, server).await?;
    let source = record
        .host
        .ok_or_else(|| MoveError::Conflict("the server is on no host".into()))?;
    let status = record.status();
    match kind {
        MigrationKind::Cold if status != ServerStatus::Stopped => {
            return Err(MoveError::Conflict(format!(
                "only a stopped server can be migrated (it is {status}); stop it or use live-migrate"
            )))
        }
        MigrationKind::Live if status != ServerStatus::Running => {
            return Err(MoveError::Conflict(format!(
                "only a running server can be live-migrated (it is {status})"
            )))
        }
        MigrationKind::Evacuate => {
            return Err(MoveError::BadRequest("evacuate a host instead".into()))
        }
        _ => {}
    }
    let loads = store.host_loads().await?;
    let source_host = loads.iter().find(|l| l.host.id == source);
    if source_host.is_some_and(|h| !placement.is_up(h.host.last_seen, now)) {
        return Err(MoveError::Conflict(
            "the server's host is down; evacuate it instead".into(),
        ));
    }
    let demand = Demand {
        vcpus: record.vcpus,
        memory_mib: record.memory_mib,
        disk_gib: record.disk_gib,
    };
    let request = PlacementRequest {
        group: store.group_of_server(server).await?,
        ..PlacementRequest::new(demand)
    };
    let target = choose_target(&loads, source, named_host, &request, now, placement)?;
    let stores = store.host_shared_stores().await?;
    let store_of = |h: HostId| stores.get(&h).cloned().flatten();
    let arrival = arrival_kind(
        kind,
        store_of(source).as_deref(),
        store_of(target).as_deref(),
    );
    let name_of = |h: HostId| {
        loads
            .iter()
            .find(|l| l.host.id == h)
            .map(|l| l.host.name.clone())
            .unwrap_or_else(|| h.to_string())
    };
    let how = match arrival {
        ArrivalKind::Shared => "shared store: nothing to copy",
        ArrivalKind::Copy => "copying the disk",
        ArrivalKind::Live => "live",
        ArrivalKind::Rebuild => "rebuilt",
    };
    let message = format!(
        "migrating ({}) from host {} to host {} ({how})",
        kind.as_str(),
        name_of(source),
        name_of(target)
    );
    Ok(store
        .start_move(
            &NewMove {
                server,
                kind,
                arrival,
                source,
                target,
                events: vec![(EventKind::Migrating, message)],
                demand,
                overcommit: placement.overcommit,
            },
            now,
        )
        .await?)
}

/// What an evacuation did, and the hosts whose desired state it changed
/// (see [`hosts_concerned`]).
#[derive(Debug)]
pub struct Evacuated {
    pub evacuation: Evacuation,
    pub concerned: HashSet<HostId>,
}

/// Restarts every server of a down host elsewhere: from the shared store
/// when the new host shares it (data kept), else rebuilt from the image
/// (data lost; a `rebuilt` event says so). Moves under way to or from the
/// host are failed first (a server coming to it goes back to its source).
pub async fn evacuate(
    store: &Store,
    host: HostId,
    now: DateTime<Utc>,
    placement: &PlacementSettings,
) -> Result<Evacuated, MoveError> {
    let loads = store.host_loads().await?;
    let down = loads
        .iter()
        .find(|l| l.host.id == host)
        .ok_or(MoveError::Store(StoreError::NotFound))?;
    if placement.is_up(down.host.last_seen, now) {
        return Err(MoveError::Conflict(format!(
            "host '{}' is up; only a down host is evacuated (migrate its servers instead)",
            down.host.name
        )));
    }
    let host_name = down.host.name.clone();
    let mut concerned = HashSet::new();
    for running in store.running_moves_of_host(host).await? {
        store
            .fail_move(
                running.migration.id,
                now,
                &format!("host {host_name} went down"),
                false,
            )
            .await?;
        concerned.extend(hosts_concerned(store, &running.migration).await?);
    }
    let stores = store.host_shared_stores().await?;
    let store_of = |h: HostId| stores.get(&h).cloned().flatten();
    let mut out = Evacuation {
        migrations: Vec::new(),
        unplaced: Vec::new(),
    };
    for server in store.servers_on_host(host).await? {
        if server.deleting {
            continue;
        }
        // Fresh loads each time: every placement claims room.
        let loads = store.host_loads().await?;
        let demand = Demand {
            vcpus: server.vcpus,
            memory_mib: server.memory_mib,
            disk_gib: server.disk_gib,
        };
        let request = PlacementRequest {
            group: store.group_of_server(server.id).await?,
            ..PlacementRequest::new(demand)
        };
        let target = match choose_target(&loads, host, None, &request, now, placement) {
            Ok(t) => t,
            Err(e) => {
                out.unplaced.push(Unplaced {
                    server: server.id,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let target_name = loads
            .iter()
            .find(|l| l.host.id == target)
            .map(|l| l.host.name.clone())
            .unwrap_or_default();
        let arrival = arrival_kind(
            MigrationKind::Evacuate,
            store_of(host).as_deref(),
            store_of(target).as_deref(),
        );
        let mut events = Vec::new();
        match arrival {
            ArrivalKind::Shared => events.push((
                EventKind::Evacuated,
                format!(
                    "host {host_name} is down: evacuated to host {target_name}, \
                     restarted from the shared store with its data"
                ),
            )),
            _ => {
                events.push((
                    EventKind::Evacuated,
                    format!("host {host_name} is down: evacuated to host {target_name}"),
                ));
                events.push((
                    EventKind::Rebuilt,
                    format!(
                        "the disk stayed on host {host_name}: rebuilt on host {target_name} \
                         from its image; the data on the old disk is lost"
                    ),
                ));
            }
        }
        let new = NewMove {
            server: server.id,
            kind: MigrationKind::Evacuate,
            arrival,
            source: host,
            target,
            events,
            demand,
            overcommit: placement.overcommit,
        };
        match store.start_move(&new, now).await {
            Ok(m) => {
                concerned.extend(hosts_concerned(store, &m.migration).await?);
                out.migrations.push(m.migration);
            }
            Err(StoreError::Conflict(reason)) => out.unplaced.push(Unplaced {
                server: server.id,
                reason,
            }),
            // The target filled up since it was chosen.
            Err(StoreError::NoValidHost(e)) => out.unplaced.push(Unplaced {
                server: server.id,
                reason: e.to_string(),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Evacuated {
        evacuation: out,
        concerned,
    })
}

/// Hosts down under `grace` (the scheduler's rule with the grace period
/// as the heartbeat timeout) that still have servers: those the
/// auto-evacuation sweep evacuates.
pub async fn hosts_to_evacuate(
    store: &Store,
    now: DateTime<Utc>,
    grace: &PlacementSettings,
) -> Result<Vec<HostId>, MoveError> {
    let mut out = Vec::new();
    for load in store.host_loads().await? {
        if !grace.is_up(load.host.last_seen, now)
            && store
                .servers_on_host(load.host.id)
                .await?
                .iter()
                .any(|s| !s.deleting)
        {
            out.push(load.host.id);
        }
    }
    Ok(out)
}

/// Takes in what a host reports about moves and leftovers: finishes or
/// fails the moves it is the target of, stores its leftovers (recording
/// `fenced` events). The hosts whose desired state changed.
pub async fn apply_report(
    store: &Store,
    host: HostId,
    host_name: &str,
    report: &HostReport,
    now: DateTime<Utc>,
) -> Result<HashSet<HostId>, MoveError> {
    // Fencing is about servers placed elsewhere; a deleted server's QEMU
    // stopped here is just its delete.
    let placements = store.placements(&report.fenced).await?;
    let fenced = report
        .fenced
        .iter()
        .copied()
        .filter(|id| {
            placements
                .get(id)
                .is_some_and(|p| p.host.is_some() && p.host != Some(host) && !p.deleting)
        })
        .collect();
    let mut changed = HashSet::new();
    // Its leftovers decide what it is released, in its own state only.
    if store
        .record_host_leftovers(
            host,
            now,
            &HostLeftovers {
                leftovers: report.leftovers.clone(),
                fenced,
            },
            host_name,
        )
        .await?
    {
        changed.insert(host);
    }
    if report.moves.is_empty() {
        return Ok(changed);
    }
    let running = store.running_moves_of_host(host).await?;
    for seen in &report.moves {
        let Some(m) = running.iter().find(|m| {
            m.migration.server == seen.id
                && m.generation == seen.generation
                && match seen.role {
                    MoveRole::Arrival => m.migration.target_host == host,
                    MoveRole::Departure => m.migration.source_host == host,
                }
        }) else {
            continue; // About an earlier move, or one already ended.
        };
        if m.arrival == ArrivalKind::Live {
            // Both ends' reports drive a live move (see `live_migration`).
            match crate::live_migration::apply_live_report(store, m, seen, now).await? {
                LiveChange::Nothing => {}
                LiveChange::Source => {
                    changed.insert(m.migration.source_host);
                }
                LiveChange::Move => changed.extend(hosts_concerned(store, &m.migration).await?),
            }
            continue;
        }
        let evacuation = m.migration.kind == MigrationKind::Evacuate;
        match (seen.role, seen.progress) {
            (MoveRole::Arrival, MoveProgress::Arrived) => {
                // Live moves end when the source reports the switch-over
                // (the live helper's part), not on the target's readiness.
                if m.arrival == ArrivalKind::Live {
                    continue;
                }
                let message = format!(
                    "{} done: the server is on host {host_name}",
                    if evacuation {
                        "evacuation"
                    } else {
                        "migration"
                    }
                );
                if store
                    .finish_move(m.migration.id, now, None, (EventKind::Migrated, &message))
                    .await?
                {
                    changed.extend(hosts_concerned(store, &m.migration).await?);
                }
            }
            (_, MoveProgress::Failed) => {
                let error = seen.error.as_deref().unwrap_or("the host gave up");
                if store
                    .fail_move(m.migration.id, now, error, evacuation)
                    .await?
                {
                    changed.extend(hosts_concerned(store, &m.migration).await?);
                }
            }
            _ => {}
        }
    }
    Ok(changed)
}

/// The move-related parts of one host's desired state.
#[derive(Debug, Default)]
pub struct HostMoves {
    pub generations: HashMap<ServerId, u64>,
    pub arrivals: HashMap<ServerId, Arrival>,
    pub departures: Vec<Departure>,
    pub released: Vec<Released>,
}

/// Computes [`HostMoves`] for `host` from the store.
pub async fn host_moves(store: &Store, host: HostId) -> Result<HostMoves, MoveError> {
    let generations = store.host_generations(host).await?;
    let running = store.running_moves_of_host(host).await?;
    // Only the hosts of this host's moves: a desired state is computed at
    // every change, and reading all of thousands of hosts each time was
    // most of the control plane's work at scale.
    let mut urls: HashMap<HostId, String> = HashMap::new();
    for m in &running {
        for id in [m.migration.source_host, m.migration.target_host] {
            if let std::collections::hash_map::Entry::Vacant(e) = urls.entry(id) {
                e.insert(match store.host(id).await {
                    Ok(h) => h.url,
                    Err(StoreError::NotFound) => String::new(),
                    Err(e) => return Err(e.into()),
                });
            }
        }
    }
    let peer = |id: HostId| PeerHost {
        id,
        url: urls.get(&id).cloned().unwrap_or_default(),
    };
    let mut arrivals = HashMap::new();
    let mut departures = Vec::new();
    let mut live_departures = Vec::new();
    for m in &running {
        let (source, target) = (m.migration.source_host, m.migration.target_host);
        if target == host {
            let arrival = match m.arrival {
                ArrivalKind::Copy => Arrival::Copy {
                    source: peer(source),
                },
                ArrivalKind::Shared => Arrival::Shared,
                ArrivalKind::Live => Arrival::Live {
                    source: peer(source),
                },
                ArrivalKind::Rebuild => Arrival::Rebuild,
            };
            arrivals.insert(m.migration.server, arrival);
        }
        // An evacuation's source is down and has nothing to give.
        if source == host && m.migration.kind != MigrationKind::Evacuate {
            if m.arrival == ArrivalKind::Live {
                live_departures.push((m.migration.server, m.migration.id));
            }
            departures.push(Departure {
                id: m.migration.server,
                generation: m.generation,
                target: peer(target),
                live: None,
            });
        }
    }
    crate::live_migration::fill_live_departures(store, &mut departures, &live_departures).await?;
    let mut leftovers = store.host_leftovers(host).await?;
    // Servers deleted on this host need no leftover report to go.
    for server in store.servers_on_host(host).await? {
        if server.deleting && !leftovers.contains(&server.id) {
            leftovers.push(server.id);
        }
    }
    let (placements, stores) = if leftovers.is_empty() {
        Default::default()
    } else {
        (
            store.placements(&leftovers).await?,
            store.host_shared_stores().await?,
        )
    };
    let departing: HashSet<ServerId> = departures.iter().map(|d| d.id).collect();
    let released = release_rules(host, &leftovers, &placements, &departing, &stores);
    Ok(HostMoves {
        generations,
        arrivals,
        departures,
        released,
    })
}

/// Which of a host's leftovers it may remove, and whether it must leave
/// the directory (a store shared with the host the server is on now):
/// - a server still departing from the host: not yet (it serves the disk);
/// - a server placed on the host itself and not being deleted: never (it
///   is desired there; the leftover report raced a new placement);
/// - a server that no longer exists, or is being deleted on this host:
///   everything goes;
/// - a server on another host: released; its directory kept when both
///   hosts have the same shared store.
pub fn release_rules(
    host: HostId,
    leftovers: &[ServerId],
    placements: &HashMap<ServerId, Placement>,
    departing: &HashSet<ServerId>,
    stores: &HashMap<HostId, Option<String>>,
) -> Vec<Released> {
    let store_of = |h: HostId| stores.get(&h).cloned().flatten();
    let mut out = Vec::new();
    for id in leftovers {
        if departing.contains(id) {
            continue;
        }
        let keep_disk = match placements.get(id) {
            None => false,
            Some(p) if p.host == Some(host) => {
                if !p.deleting {
                    continue;
                }
                false
            }
            Some(p) => match (store_of(host), p.host.and_then(store_of)) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => false,
            },
        };
        out.push(Released { id: *id, keep_disk });
    }
    out
}

#[cfg(test)]
mod tests;
