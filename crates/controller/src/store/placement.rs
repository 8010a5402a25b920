//! The claim: choosing a host for a new server inside the transaction that
//! inserts it, so two creates can never both take the last room of a host;
//! and the same claim on a move's target inside the transaction that places
//! the server there ([`claim_on`]).
//!
//! The candidates are ranked by a recent copy of every host's load (see
//! `load_hints`); the claim itself is decided by the host's load read in
//! the transaction.
//!
//! SQLite: the create's transaction began with `BEGIN IMMEDIATE`, so it holds
//! the database's write lock; no other create runs between its reading of a
//! host's load and its commit.
//!
//! PostgreSQL: creates run side by side (READ COMMITTED). Each candidate in turn is locked
//! (`SELECT ... FOR UPDATE` on its `hosts` row, waiting for any create that
//! holds it to commit) and its load read again by a new statement, which
//! therefore sees every server committed on it meanwhile; if it no longer
//! fits, the lock is given back (the savepoint around it is rolled back) and
//! the next candidate is tried. A create thus waits holding no host's lock
//! but the project's and its server group's (always taken before any host),
//! so creates cannot deadlock on hosts.

use super::hosts::{load_in, loads_in, HostLoad};
use super::{Backend, Store, StoreError, StoreResult};
use crate::scheduler::{
    self, filters, Demand, GroupContext, Overcommit, PlacementError, PlacementRequest,
    PlacementSettings,
};
use nubis_api::agent::Accelerator;
use nubis_api::{HostId, ProjectId, ServerGroupId};
use sqlx::Acquire;

/// Where a new server goes.
#[derive(Clone, Debug)]
pub enum Placement {
    /// On this host, unchecked (tests; an administrator's choice).
    On(HostId),
    /// Wherever the scheduler finds room, claimed in the create transaction.
    Schedule(Schedule),
}

impl From<HostId> for Placement {
    fn from(host: HostId) -> Self {
        Self::On(host)
    }
}

/// What the scheduler is asked, beyond the server's size.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    pub settings: PlacementSettings,
    /// Only hosts with this accelerator.
    pub accel: Option<Accelerator>,
    /// The server group (of the server's project) it joins.
    pub group: Option<ServerGroupId>,
}

/// The few hosts a create for `project` needing `demand` tries first, by
/// the store's load hints (see `load_hints`), ranked before its
/// transaction begins: ranking thousands of hosts inside it would hold the
/// database's write lock (SQLite) that long. `None` when the hints say
/// nothing fits: then [`claim`] reads every host's load and decides.
pub(super) async fn hinted_candidates(
    store: &Store,
    project: ProjectId,
    demand: Demand,
    schedule: &Schedule,
) -> StoreResult<Option<Vec<HostId>>> {
    let group = match schedule.group {
        Some(group) => {
            let mut conn = store.pool().acquire().await?;
            match group_context(&mut conn, None, project, group).await {
                Ok(context) => Some(context),
                // Deleted meanwhile: the claim says so.
                Err(StoreError::Conflict(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        None => None,
    };
    let request = PlacementRequest {
        demand,
        accel: schedule.accel,
        group,
    };
    let ranked = store
        .load_hints()
        .rank(
            store.pool(),
            &request,
            &schedule.settings,
            chrono::Utc::now(),
            HINTED_TRIES,
        )
        .await?;
    Ok(ranked.ok())
}

/// Chooses and claims a host for a server of `project` needing `demand`.
///
/// The `hinted` hosts (see [`hinted_candidates`]) are tried first; each is
/// taken only if its current load, read here, still lets it pass the
/// scheduler. When none does (or there were none), every host's current
/// load is read here and ranked again: the hints never decide a refusal or
/// a placement, they only spare the reading.
pub(super) async fn claim(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    store: &Store,
    project: ProjectId,
    demand: Demand,
    schedule: &Schedule,
    hinted: Option<Vec<HostId>>,
) -> StoreResult<HostId> {
    let backend = store.backend();
    let group = match schedule.group {
        Some(group) => Some(group_context(tx, Some(backend), project, group).await?),
        None => None,
    };
    let request = PlacementRequest {
        demand,
        accel: schedule.accel,
        group,
    };
    let settings = &schedule.settings;
    let now = chrono::Utc::now();
    for host in hinted.into_iter().flatten() {
        if let Some(load) = take_if_fits(tx, backend, host, &request, settings, now).await? {
            store.load_hints().claimed(&load, demand);
            return Ok(host);
        }
    }
    // The hints were stale: rank by every host's current load.
    let loads = loads_in(tx).await?;
    let order =
        scheduler::candidates(&loads, &request, settings, now).map_err(StoreError::NoValidHost)?;
    for host in order {
        if let Some(load) = take_if_fits(tx, backend, host, &request, settings, now).await? {
            store.load_hints().claimed(&load, demand);
            return Ok(host);
        }
    }
    Err(StoreError::NoValidHost(PlacementError::NoCapacity {
        vcpus: demand.vcpus,
        memory_mib: demand.memory_mib,
        disk_gib: demand.disk_gib,
        why: " (the last hosts with room filled up meanwhile)".into(),
    }))
}

/// How many of the hints' candidates a claim checks before it reads every
/// host's load instead.
const HINTED_TRIES: usize = 8;

/// `host`'s current load if it still passes the scheduler for `request`,
/// locked for the rest of the transaction; `None` (and no lock) if not.
///
/// SQLite: the create's transaction began with `BEGIN IMMEDIATE` and holds
/// the database's write lock, so the load read is current until commit.
/// PostgreSQL: the host's row is locked first (`FOR UPDATE`, waiting for
/// any create holding it), then its load read by a new statement, which
/// sees every server committed on it meanwhile; a host that no longer
/// fits gives its lock back (the savepoint is rolled back).
async fn take_if_fits(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    host: HostId,
    request: &PlacementRequest,
    settings: &PlacementSettings,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Option<HostLoad>> {
    let mut attempt = Acquire::begin(&mut **tx).await?;
    let load = match locked_load(&mut attempt, backend, host).await {
        Ok(load) => load,
        // Deleted since it was ranked.
        Err(StoreError::NotFound) => {
            attempt.rollback().await?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if scheduler::candidates(std::slice::from_ref(&load), request, settings, now).is_ok() {
        attempt.commit().await?;
        Ok(Some(load))
    } else {
        attempt.rollback().await?;
        Ok(None)
    }
}

/// Claims room on `host`, already chosen (a move's target), for the rest of
/// the transaction: the host is held as a create's claim holds it and must
/// pass the same rule ([`filters::claimable`]) on its load read under that
/// lock, so moves and creates onto one host take turns and never overbook
/// it. Refused with `NoValidHost` saying why.
pub(super) async fn claim_on(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    host: HostId,
    demand: Demand,
    overcommit: &Overcommit,
) -> StoreResult<()> {
    let load = locked_load(tx, backend, host).await?;
    filters::claimable(&load, demand, overcommit).map_err(StoreError::NoValidHost)
}

/// Holds `host` against other claims until the transaction (or savepoint)
/// ends and reads its load anew. On PostgreSQL that is its `hosts` row
/// locked `FOR UPDATE` (waiting for a claim holding it to commit; the new
/// statement then sees what that claim placed); on SQLite the transaction
/// holds the database's write lock since `BEGIN IMMEDIATE` already.
async fn locked_load(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    host: HostId,
) -> StoreResult<HostLoad> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM hosts WHERE id = $1 FOR UPDATE")
            .bind(host.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    }
    load_in(conn, host).await
}

/// Where the members of a server group of `project` are, and its policy.
/// With `lock` (the backend, in the create's transaction) the group is
/// held for the rest of the transaction, so creates joining it take turns.
async fn group_context(
    conn: &mut sqlx::AnyConnection,
    lock: Option<Backend>,
    project: ProjectId,
    group: ServerGroupId,
) -> StoreResult<GroupContext> {
    let lock = match lock {
        Some(Backend::Postgres) => " FOR UPDATE",
        Some(Backend::Sqlite) | None => "",
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT policy FROM server_groups WHERE id = $1 AND project_id = $2{lock}"
    )))
    .bind(group.to_string())
    .bind(project.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(StoreError::Conflict(
            "the server group was deleted meanwhile".into(),
        ));
    };
    let policy: String = sqlx::Row::try_get(&row, "policy")?;
    let policy = nubis_api::server_groups::GroupPolicy::parse(&policy)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown server group policy '{policy}'")))?;
    let rows = sqlx::query(
        "SELECT DISTINCT s.host_id FROM server_group_members m \
         JOIN servers s ON s.id = m.server_id \
         WHERE m.group_id = $1 AND s.host_id IS NOT NULL",
    )
    .bind(group.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let member_hosts = rows
        .iter()
        .map(|r| super::rows::parse(r, "host_id"))
        .collect::<StoreResult<_>>()?;
    Ok(GroupContext {
        policy,
        member_hosts,
    })
}
