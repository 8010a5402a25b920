//! Instances on this host that are no longer its own: deleted, or placed
//! on another host since (a migration done, an evacuation while this host
//! was down). Their QEMU is stopped at once — fencing: a server must never
//! run twice — but their files stay until the controller lists them in
//! `released`; from a store shared with the server's new host only this
//! host's own traces go (`keep_disk`).

use crate::qemu::QemuProcess;
use nubis_api::ServerId;

/// Stops every QEMU of leftover `id` on this host (SIGKILL: it runs
/// elsewhere, or is deleted; nothing of its state is wanted). Whether one
/// was running.
pub async fn fence(id: ServerId, connected: Option<QemuProcess>) -> bool {
    let mut found = false;
    if let Some(process) = connected {
        process.kill().await;
        found = true;
    }
    for process in QemuProcess::all_of(&id.to_string()) {
        process.kill().await;
        found = true;
    }
    if found {
        tracing::warn!(instance = %id, "fenced: stopped the QEMU of an instance that is no longer this host's");
    }
    found
}
