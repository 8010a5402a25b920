//! Live migration between two QEMUs, local disk included: the QMP steps on
//! both sides.
//!
//! The **target** QEMU runs the same command line as the source plus
//! `-incoming defer` (and `-S`), on an empty qcow2 overlay of the same size
//! over the same base image. [`prepare_incoming`] exports its disk node
//! writable over NBD and listens for the migration stream; [`finish_incoming`]
//! waits for the stream to complete, stops the NBD server and resumes the
//! guest.
//!
//! The **source** ([`migrate_out`]) mirrors its disk into that export with
//! `blockdev-mirror` **sync=top**: only the overlay's own clusters travel;
//! what the overlay does not hold is read from the base image, which is the
//! same file on both hosts (cached by image id), so copying it would move
//! gigabytes for nothing. (A disk without backing file — installed from an
//! ISO — is all "top", so the same call copies it whole.) The mirror runs in
//! `write-blocking` mode, so once it is ready every guest write reaches both
//! disks and it cannot fall behind a busy guest. Then the RAM goes with
//! `migrate`, with `pause-before-switchover`: when the source's vCPUs stop,
//! QEMU waits, the mirror is completed (`block-job-cancel` of a ready mirror
//! finishes the copy without pivoting: the source keeps its own disk) and
//! only then does the last device state go (`migrate-continue`). So the
//! target never runs on a disk that misses the source's last writes; the
//! downtime QEMU reports includes that final flush.
//!
//! **Rollback** ([`roll_back`]): until `query-migrate` says `completed` the
//! source owns the guest; any failure cancels the migration and the mirror
//! and resumes the source if it was paused. After `completed` the source
//! never runs the guest again (the target may already be writing to its
//! disk); it only quits.
//!
//! The NBD export and the migration stream are plain TCP on the hosts'
//! underlay: neither is encrypted (QEMU's TLS for both is the follow-up).

use super::qmp::{QmpClient, QmpError};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The block node of the instance's disk (see `cmdline`).
pub const DISK_NODE: &str = "disk0";
/// The NBD export name of the disk on the target.
pub const EXPORT_NAME: &str = "disk0";
/// The source's block node that writes into the target's export.
const MIRROR_TARGET_NODE: &str = "migration-target";
/// The source's mirror job.
const MIRROR_JOB: &str = "migration-mirror";
/// The target's block export.
const EXPORT_ID: &str = "migration-export";

/// The longest the guest may be paused for the switch-over, in ms (QEMU's
/// default, also Proxmox's; Nova uses 500).
pub const DOWNTIME_LIMIT_MS: u64 = 300;
/// Bandwidth cap of the RAM stream, bytes/s: well above QEMU 7's 32 MiB/s
/// default, which makes a few-GiB guest take minutes, yet leaves room on a
/// 10 GbE underlay for the guests' own traffic.
pub const MAX_BANDWIDTH: u64 = 512 << 20;
/// How long the last disk sync may take while the guest is paused; in
/// `write-blocking` mode only writes in flight remain, so this is generous.
const FINAL_SYNC_LIMIT: Duration = Duration::from_secs(60);
/// How often the steps poll QEMU's job and migration state.
const POLL: Duration = Duration::from_millis(50);

/// Where a target QEMU waits: its NBD export and its migration listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncomingEndpoints {
    pub nbd: SocketAddr,
    pub migration: SocketAddr,
}

/// Time limits of a migration's phases, and its bandwidth.
#[derive(Clone, Copy, Debug)]
pub struct MigrationSettings {
    /// From starting the mirror until it is ready (the disk is copied).
    pub mirror: Duration,
    /// From `migrate` until QEMU says `completed` (the RAM is copied).
    pub migration: Duration,
    /// Bandwidth cap of the RAM stream, bytes/s.
    pub max_bandwidth: u64,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        // A 20 GiB overlay at 100 MB/s takes ~3.5 min; a guest that
        // dirties memory faster than the link takes forever (auto-converge
        // throttles it meanwhile): past the limits the source carries on.
        Self {
            mirror: Duration::from_secs(30 * 60),
            migration: Duration::from_secs(15 * 60),
            max_bandwidth: MAX_BANDWIDTH,
        }
    }
}

/// What a finished migration measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationOutcome {
    /// The guest's pause at the switch-over, as QEMU reports it (ms).
    pub downtime_ms: u64,
    /// From `migrate` to `completed`, as QEMU reports it (ms).
    pub total_ms: u64,
}

/// Why a migration step failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("disk mirror failed: {0}")]
    Mirror(String),
    #[error("migration {0}")]
    Migration(String),
    #[error("{what} did not finish within {} s", limit.as_secs())]
    Timeout { what: &'static str, limit: Duration },
}

/// A TCP port free on `ip` now, for a QEMU listener (the OS picks it; the
/// probe socket closes at once, and QEMU binds it a moment later).
pub fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

// ------------------------------------------------------------------ QMP commands

fn inet(addr: SocketAddr) -> Value {
    json!({"host": addr.ip().to_string(), "port": addr.port().to_string()})
}

fn tcp_uri(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("tcp:{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("tcp:[{}]:{}", a.ip(), a.port()),
    }
}

/// `nbd-server-start` on `addr` (which takes the older, nested
/// `SocketAddressLegacy` shape, unlike `blockdev-add`).
async fn nbd_server_start(qmp: &QmpClient, addr: SocketAddr) -> Result<(), QmpError> {
    let server = json!({"type": "inet", "data": inet(addr)});
    qmp.execute("nbd-server-start", Some(json!({"addr": server})))
        .await
        .map(drop)
}

/// `block-export-add` of `node` over NBD as [`EXPORT_NAME`], writable.
async fn export_disk(qmp: &QmpClient, node: &str) -> Result<(), QmpError> {
    qmp.execute(
        "block-export-add",
        Some(json!({
            "type": "nbd", "id": EXPORT_ID, "node-name": node,
            "name": EXPORT_NAME, "writable": true,
        })),
    )
    .await
    .map(drop)
}

/// `nbd-server-stop` (ends its exports too).
async fn nbd_server_stop(qmp: &QmpClient) -> Result<(), QmpError> {
    qmp.execute("nbd-server-stop", None).await.map(drop)
}

/// `migrate-incoming` on `addr`.
async fn migrate_incoming(qmp: &QmpClient, addr: SocketAddr) -> Result<(), QmpError> {
    qmp.execute("migrate-incoming", Some(json!({"uri": tcp_uri(addr)})))
        .await
        .map(drop)
}

/// `blockdev-add` of an NBD client node for the target's export.
async fn add_nbd_target(qmp: &QmpClient, nbd: SocketAddr) -> Result<(), QmpError> {
    let mut server = inet(nbd);
    server["type"] = json!("inet");
    qmp.execute(
        "blockdev-add",
        Some(json!({
            "driver": "nbd", "node-name": MIRROR_TARGET_NODE,
            "server": server, "export": EXPORT_NAME,
        })),
    )
    .await
    .map(drop)
}

/// `blockdev-del` of a node.
async fn blockdev_del(qmp: &QmpClient, node: &str) -> Result<(), QmpError> {
    qmp.execute("blockdev-del", Some(json!({"node-name": node})))
        .await
        .map(drop)
}

/// `blockdev-mirror` of the disk's top layer into the NBD node; the job
/// stays listed once it ends (`auto-dismiss` off) so its error can be read.
async fn start_mirror(qmp: &QmpClient) -> Result<(), QmpError> {
    qmp.execute(
        "blockdev-mirror",
        Some(json!({
            "job-id": MIRROR_JOB, "device": DISK_NODE, "target": MIRROR_TARGET_NODE,
            "sync": "top", "copy-mode": "write-blocking", "auto-dismiss": false,
        })),
    )
    .await
    .map(drop)
}

/// The mirror job as `query-block-jobs` lists it, `None` once gone.
async fn mirror_job(qmp: &QmpClient) -> Result<Option<Value>, QmpError> {
    let jobs = qmp.execute("query-block-jobs", None).await?;
    Ok(jobs
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j["device"] == MIRROR_JOB)
        .cloned())
}

/// `block-job-cancel` of the mirror: on a ready job (not forced) this
/// completes the copy and ends without switching the source to the target.
async fn cancel_mirror(qmp: &QmpClient, force: bool) -> Result<(), QmpError> {
    qmp.execute(
        "block-job-cancel",
        Some(json!({"device": MIRROR_JOB, "force": force})),
    )
    .await
    .map(drop)
}

/// `job-dismiss` of a concluded mirror.
async fn dismiss_mirror(qmp: &QmpClient) -> Result<(), QmpError> {
    qmp.execute("job-dismiss", Some(json!({"id": MIRROR_JOB})))
        .await
        .map(drop)
}

/// The source's migration capabilities and parameters.
async fn configure_source(qmp: &QmpClient, max_bandwidth: u64) -> Result<(), QmpError> {
    let capabilities: Vec<Value> = ["pause-before-switchover", "auto-converge"]
        .iter()
        .map(|c| json!({"capability": c, "state": true}))
        .collect();
    qmp.execute(
        "migrate-set-capabilities",
        Some(json!({"capabilities": capabilities})),
    )
    .await?;
    qmp.execute(
        "migrate-set-parameters",
        Some(json!({"downtime-limit": DOWNTIME_LIMIT_MS, "max-bandwidth": max_bandwidth})),
    )
    .await
    .map(drop)
}

/// `migrate` to the target's listener.
async fn migrate(qmp: &QmpClient, addr: SocketAddr) -> Result<(), QmpError> {
    qmp.execute("migrate", Some(json!({"uri": tcp_uri(addr)})))
        .await
        .map(drop)
}

/// `migrate-continue` out of the `pre-switchover` pause.
async fn migrate_continue(qmp: &QmpClient) -> Result<(), QmpError> {
    qmp.execute("migrate-continue", Some(json!({"state": "pre-switchover"})))
        .await
        .map(drop)
}

/// `migrate_cancel`.
async fn migrate_cancel(qmp: &QmpClient) -> Result<(), QmpError> {
    qmp.execute("migrate_cancel", None).await.map(drop)
}

/// `query-migrate`.
async fn query_migrate(qmp: &QmpClient) -> Result<Value, QmpError> {
    qmp.execute("query-migrate", None).await
}

fn migration_status(info: &Value) -> &str {
    info["status"].as_str().unwrap_or("none")
}

// ------------------------------------------------------------------ target side

/// Target, right after its QEMU started with `-incoming defer`: serves the
/// disk node over NBD on `nbd` and listens for the migration stream on
/// `migration` (both on the host's underlay address).
pub async fn prepare_incoming(
    qmp: &QmpClient,
    endpoints: IncomingEndpoints,
) -> Result<(), MigrationError> {
    nbd_server_start(qmp, endpoints.nbd).await?;
    export_disk(qmp, DISK_NODE).await?;
    migrate_incoming(qmp, endpoints.migration).await?;
    Ok(())
}

/// Whether the target's incoming migration is still under way: `Ok(true)`
/// while it runs, `Ok(false)` once it completed, an error if it failed.
/// (A failed incoming migration usually ends the target QEMU: then QMP is
/// closed.)
pub async fn incoming_pending(qmp: &QmpClient) -> Result<bool, MigrationError> {
    let info = query_migrate(qmp).await?;
    match migration_status(&info) {
        "completed" => Ok(false),
        "failed" | "cancelled" => Err(MigrationError::Migration(format!(
            "failed on the target: {}",
            info["error-desc"].as_str().unwrap_or("no reason given")
        ))),
        // `none` before the source connects; `setup`, `active` and the like after.
        _ => Ok(true),
    }
}

/// Target: waits (up to `limit`) until the migration completed, then stops
/// serving the disk and runs the guest.
pub async fn finish_incoming(qmp: &QmpClient, limit: Duration) -> Result<(), MigrationError> {
    let deadline = tokio::time::Instant::now() + limit;
    while incoming_pending(qmp).await? {
        if tokio::time::Instant::now() >= deadline {
            return Err(MigrationError::Timeout {
                what: "the incoming migration",
                limit,
            });
        }
        tokio::time::sleep(POLL).await;
    }
    resume_arrived(qmp).await
}

/// Target, once its migration completed: ends the NBD export (the source
/// is done writing) and resumes the guest there.
pub async fn resume_arrived(qmp: &QmpClient) -> Result<(), MigrationError> {
    nbd_server_stop(qmp).await?;
    qmp.execute("cont", None).await?;
    Ok(())
}

// ------------------------------------------------------------------ source side

/// Source: mirrors the disk to the target's export, migrates the guest and
/// returns what QEMU measured. On any failure it rolls back ([`roll_back`])
/// before returning the error: the guest keeps running here. After success
/// the source QEMU is in `postmigrate` and must only be quit.
pub async fn migrate_out(
    qmp: &QmpClient,
    target: IncomingEndpoints,
    settings: MigrationSettings,
) -> Result<MigrationOutcome, MigrationError> {
    match run_source(qmp, target, settings).await {
        Ok(outcome) => {
            // The NBD node is of no use any more; its export is gone with
            // the target's NBD server soon.
            if let Err(e) = blockdev_del(qmp, MIRROR_TARGET_NODE).await {
                tracing::debug!(error = %e, "could not remove the mirror's target node");
            }
            Ok(outcome)
        }
        Err(e) => {
            tracing::warn!(error = %e, "live migration failed; rolling back");
            roll_back(qmp).await;
            Err(e)
        }
    }
}

async fn run_source(
    qmp: &QmpClient,
    target: IncomingEndpoints,
    settings: MigrationSettings,
) -> Result<MigrationOutcome, MigrationError> {
    tracing::info!(nbd = %target.nbd, "mirroring the disk to the target");
    add_nbd_target(qmp, target.nbd).await?;
    start_mirror(qmp).await?;
    wait_mirror_ready(qmp, settings.mirror).await?;
    tracing::info!(migration = %target.migration, "disk mirrored; migrating the guest");
    configure_source(qmp, settings.max_bandwidth).await?;
    migrate(qmp, target.migration).await?;
    let deadline = tokio::time::Instant::now() + settings.migration;
    let mut last_status = String::new();
    let mut polls = 0u64;
    let mut continued = false;
    loop {
        let info = query_migrate(qmp).await?;
        polls += 1;
        if migration_status(&info) != last_status || polls.is_multiple_of(100) {
            last_status = migration_status(&info).to_owned();
            tracing::info!(status = %last_status, ram = %info["ram"], "migration progress");
        }
        match migration_status(&info) {
            "completed" => {
                return Ok(MigrationOutcome {
                    downtime_ms: info["downtime"].as_u64().unwrap_or(0),
                    total_ms: info["total-time"].as_u64().unwrap_or(0),
                })
            }
            // Once: the state may read `pre-switchover` again until the
            // migration thread has woken up from `migrate-continue`.
            "pre-switchover" if !continued => {
                // vCPUs are stopped: no more guest writes. Complete the
                // mirror, then let the last device state go.
                complete_mirror(qmp).await?;
                migrate_continue(qmp).await?;
                continued = true;
            }
            "failed" | "cancelled" | "cancelling" => {
                return Err(MigrationError::Migration(format!(
                    "{}: {}",
                    migration_status(&info),
                    info["error-desc"].as_str().unwrap_or("no reason given")
                )))
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(MigrationError::Timeout {
                what: "the migration",
                limit: settings.migration,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The mirror's failure, if it ended with one.
fn job_error(job: &Value) -> Option<String> {
    job["error"].as_str().map(str::to_owned)
}

async fn wait_mirror_ready(qmp: &QmpClient, limit: Duration) -> Result<(), MigrationError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut polls = 0u64;
    loop {
        let job = mirror_job(qmp)
            .await?
            .ok_or_else(|| MigrationError::Mirror("the mirror job vanished".into()))?;
        if job["status"] == "concluded" || job["status"] == "aborting" {
            return Err(MigrationError::Mirror(
                job_error(&job).unwrap_or_else(|| "it ended before it was ready".into()),
            ));
        }
        if job["ready"] == true {
            return Ok(());
        }
        polls += 1;
        if polls.is_multiple_of(100) {
            tracing::info!(offset = %job["offset"], len = %job["len"], status = %job["status"], "disk mirror progress");
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(MigrationError::Timeout {
                what: "the disk mirror",
                limit,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Ends the ready mirror with the copy complete (the source keeps its own
/// disk) and checks it ended without error.
async fn complete_mirror(qmp: &QmpClient) -> Result<(), MigrationError> {
    cancel_mirror(qmp, false).await?;
    let deadline = tokio::time::Instant::now() + FINAL_SYNC_LIMIT;
    loop {
        match mirror_job(qmp).await? {
            Some(job) if job["status"] == "concluded" => {
                dismiss_mirror(qmp).await?;
                return match job_error(&job) {
                    Some(e) => Err(MigrationError::Mirror(e)),
                    None => Ok(()),
                };
            }
            None => return Err(MigrationError::Mirror("the mirror job vanished".into())),
            Some(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(MigrationError::Timeout {
                what: "the final disk sync",
                limit: FINAL_SYNC_LIMIT,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Source: undoes a migration that did not complete, step by step and
/// best effort (each may already be undone): cancels the migration, drops
/// the mirror and its NBD node, and resumes the guest if it is paused.
/// Never after `completed`: then the target owns the guest.
pub async fn roll_back(qmp: &QmpClient) {
    let status = match query_migrate(qmp).await {
        Ok(info) => migration_status(&info).to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the migration state to roll back");
            return;
        }
    };
    if status == "completed" {
        tracing::warn!("the migration completed after all; the source stays stopped");
        return;
    }
    if !matches!(status.as_str(), "none" | "failed" | "cancelled") {
        if let Err(e) = migrate_cancel(qmp).await {
            tracing::warn!(error = %e, "migrate_cancel");
        }
        // Cancelling lands in `cancelled` (QEMU resumes the vCPUs it stopped).
        for _ in 0..200 {
            match query_migrate(qmp).await {
                Ok(info) if matches!(migration_status(&info), "cancelling" | "pre-switchover") => {
                    tokio::time::sleep(POLL).await
                }
                _ => break,
            }
        }
    }
    if let Ok(Some(job)) = mirror_job(qmp).await {
        if job["status"] != "concluded" {
            let _ = cancel_mirror(qmp, true).await;
            for _ in 0..200 {
                match mirror_job(qmp).await {
                    Ok(Some(job)) if job["status"] != "concluded" => tokio::time::sleep(POLL).await,
                    _ => break,
                }
            }
        }
        let _ = dismiss_mirror(qmp).await;
    }
    let _ = blockdev_del(qmp, MIRROR_TARGET_NODE).await;
    match qmp.run_state().await {
        Ok(state) if matches!(state.as_str(), "paused" | "postmigrate") => {
            if let Err(e) = qmp.execute("cont", None).await {
                tracing::warn!(error = %e, "cannot resume the guest on the source");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the source's run state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_addresses() {
        let v4: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let v6: SocketAddr = "[fd00::2]:4000".parse().unwrap();
        assert_eq!(tcp_uri(v4), "tcp:10.0.0.2:4000");
        assert_eq!(tcp_uri(v6), "tcp:[fd00::2]:4000");
        assert_eq!(inet(v4), json!({"host": "10.0.0.2", "port": "4000"}));
    }

    #[test]
    fn a_free_port_is_bindable() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let port = free_port(ip).unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind((ip, port)).unwrap();
    }
}
