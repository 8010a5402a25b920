//! The agent's main loops: follow the controller's desired state, keep one
//! actor per instance, remove whatever is not desired, report what is seen.

use crate::controller_client::ControllerClient;
use crate::instance::{self, Desire, InstanceContext, InstanceHandle};
use crate::layout::Layout;
use nubis_api::agent::DesiredState;
use nubis_api::{HostId, ServerId};
use std::collections::HashMap;
use std::time::Duration;

/// The instance actors, kept across restarts of [`follow_desired_state`] so
/// a restarted loop adopts them instead of starting a second actor per instance.
pub type Actors = std::sync::Arc<tokio::sync::Mutex<HashMap<ServerId, InstanceHandle>>>;

/// Keeps this host converged to the desired state, forever.
pub async fn follow_desired_state(
    client: ControllerClient,
    host: HostId,
    layout: Layout,
    ctx: InstanceContext,
    directory: std::sync::Arc<crate::local_instances::LocalInstances>,
    actors: Actors,
) {
    // Held for the loop's life; released if it panics, for the next run.
    let mut actors = actors.lock().await;
    let mut revision = None;
    loop {
        match client.desired(host, revision).await {
            Ok(desired) => {
                revision = Some(desired.revision);
                directory.update(&desired.instances);
                let started = std::time::Instant::now();
                // Bridges first: instances plug into them. Instances then
                // start paused while the firewall loads, and resume once it
                // covers their ports; DHCP and DNS follow.
                if let Err(e) = ctx
                    .networking
                    .converge(&desired.networks, &desired.floating_ips)
                    .await
                {
                    tracing::warn!(error = %format!("{e:#}"), "cannot converge host networking");
                }
                apply(&desired, &mut actors, &layout, &ctx);
                let hosted = hosted_instances(&desired, &actors);
                if let Err(e) = ctx
                    .networking
                    .apply_firewall(
                        &desired.networks,
                        &hosted,
                        &desired.floating_ips,
                        &desired.security_groups,
                    )
                    .await
                {
                    tracing::warn!(error = %format!("{e:#}"), "cannot apply the firewall");
                }
                tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "host networking converged"
                );
                if let Err(e) = ctx.networking.serve(&desired.networks, &hosted).await {
                    tracing::warn!(error = %format!("{e:#}"), "cannot serve DHCP and DNS");
                }
                if let Err(e) = ctx.networking.remove_stray_taps(&hosted).await {
                    tracing::warn!(error = %format!("{e:#}"), "cannot remove stray TAPs");
                }
                // Deleted images go, and the cache stays under its limit.
                ctx.images.tidy(&desired.instances).await;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot fetch desired state; retrying");
                revision = None;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// The instances whose guests this host serves now: the desired ones plus
/// those departing, with the last spec they ran here (a live source runs
/// the guest until the switch-over; its TAPs, firewall rules and DHCP
/// entries must stay until then).
fn hosted_instances(
    desired: &DesiredState,
    actors: &HashMap<ServerId, InstanceHandle>,
) -> Vec<nubis_api::agent::InstanceSpec> {
    let mut hosted = desired.instances.clone();
    for departure in &desired.departures {
        if hosted.iter().any(|s| s.id == departure.id) {
            continue;
        }
        if let Some(spec) = actors.get(&departure.id).and_then(|a| a.last_spec.clone()) {
            hosted.push(spec);
        }
    }
    hosted
}

/// What the reconciler wants of each instance it knows: desired ones run,
/// departing ones keep their files, released ones go, and every other
/// instance on the host is held (fenced, files kept) until released.
pub fn desires(
    desired: &DesiredState,
    present: &[ServerId],
    running_actors: impl IntoIterator<Item = ServerId>,
) -> HashMap<ServerId, Desire> {
    let mut out: HashMap<ServerId, Desire> = HashMap::new();
    for id in present.iter().copied().chain(running_actors) {
        out.insert(id, Desire::Hold);
    }
    for released in &desired.released {
        if out.contains_key(&released.id) {
            out.insert(
                released.id,
                Desire::Remove {
                    keep_disk: released.keep_disk,
                },
            );
        }
    }
    for departure in &desired.departures {
        if out.contains_key(&departure.id) {
            out.insert(departure.id, Desire::Depart(departure.clone()));
        }
    }
    for spec in &desired.instances {
        out.insert(spec.id, Desire::Run(Box::new(spec.clone())));
    }
    out
}

/// Hands every actor what is wanted of its instance, starting actors for
/// instances that have none.
fn apply(
    desired: &DesiredState,
    actors: &mut HashMap<ServerId, InstanceHandle>,
    layout: &Layout,
    ctx: &InstanceContext,
) {
    actors.retain(|_, a| !a.task.is_finished());
    let present = layout.present_instances();
    let wants = desires(desired, &present, actors.keys().copied());
    ctx.moves.departures.update(&desired.departures);
    ctx.reports.set_leftovers(
        wants
            .iter()
            .filter(|(_, d)| matches!(d, Desire::Hold | Desire::Remove { .. }))
            .map(|(id, _)| *id),
    );
    for (id, desire) in wants {
        if let Desire::Run(_) = &desire {
            if let Err(e) = layout.claim(id) {
                tracing::warn!(instance = %id, error = %e, "cannot claim the instance in the shared store");
                continue;
            }
        }
        if let Desire::Remove { .. } = &desire {
            // Before the files go: a claim without files is harmless, a
            // shared directory without a claim is nobody's.
            tracing::info!(instance = %id, "released by the controller; removing");
            layout.unclaim(id);
        }
        let last_spec = match &desire {
            Desire::Run(spec) => Some((**spec).clone()),
            _ => None,
        };
        match actors.get_mut(&id) {
            Some(actor) => {
                if last_spec.is_some() {
                    actor.last_spec = last_spec;
                }
                actor.spec.send_if_modified(|current| {
                    let changed = *current != desire;
                    if changed {
                        *current = desire.clone();
                    }
                    changed
                });
            }
            None => {
                if desire == Desire::Hold {
                    tracing::info!(instance = %id, "instance is no longer this host's; holding it until released");
                }
                let mut actor = instance::spawn(id, layout.instance(id), ctx.clone(), desire);
                actor.last_spec = last_spec;
                actors.insert(id, actor);
            }
        }
    }
}

pub async fn report_observed_state(
    client: ControllerClient,
    host: HostId,
    layout: Layout,
    ctx: InstanceContext,
    directory: std::sync::Arc<crate::local_instances::LocalInstances>,
    interval: Duration,
) {
    let meter = crate::metering::Meter::new();
    // The host's own addresses and routes change rarely: read them again
    // about once per interval (the heartbeat), not on every report, so
    // reports made while a server is created run no extra process.
    let mut addressing_read: Option<tokio::time::Instant> = None;
    loop {
        let mut report = ctx.reports.snapshot();
        report.held = layout.present_instances();
        if addressing_read.is_none_or(|at| at.elapsed() >= interval) {
            match crate::host_info::addressing().await {
                Ok(a) => report.addressing = Some(a),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot read the host's addresses and routes");
                    addressing_read = Some(tokio::time::Instant::now());
                }
            }
        }
        let instances = directory.all();
        report.traffic = meter.read(&instances);
        ctx.networking.mark_network_faults(&mut report, &instances);
        if let Err(e) = client.report(host, &report).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot report to the controller");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        ctx.reports.reported(&report);
        if report.addressing.is_some() {
            addressing_read = Some(tokio::time::Instant::now());
        }
        let _ = tokio::time::timeout(interval, async {
            tokio::select! {
                () = ctx.reports.changed() => {}
                () = ctx.networking.faults_changed() => {}
            }
        })
        .await;
    }
}

#[cfg(test)]
mod desire_tests;
