//! The agent's main loops: follow the controller's desired state, keep one
//! actor per instance, remove whatever is not desired, report what is seen.

use crate::controller_client::ControllerClient;
use crate::instance::{self, InstanceContext, InstanceHandle};
use crate::layout::Layout;
use nubis_api::agent::{Departure, DesiredState};
use nubis_api::{HostId, ServerId};
use std::collections::{HashMap, HashSet};
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
/// those departing, whose actors keep their last spec (a live source runs
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
        if let Some(spec) = actors
            .get(&departure.id)
            .and_then(|a| a.spec.borrow().clone())
        {
            hosted.push(spec);
        }
    }
    hosted
}

/// Hands every actor its spec; instances not desired (including leftovers on
/// disk from before a crash) get an actor told to remove them.
fn apply(
    desired: &DesiredState,
    actors: &mut HashMap<ServerId, InstanceHandle>,
    layout: &Layout,
    ctx: &InstanceContext,
) {
    actors.retain(|_, a| !a.task.is_finished());
    let wanted: HashSet<ServerId> = desired.instances.iter().map(|s| s.id).collect();
    for spec in &desired.instances {
        match actors.get(&spec.id) {
            Some(actor) => {
                actor.spec.send_if_modified(|current| {
                    let changed = current.as_ref() != Some(spec);
                    if changed {
                        *current = Some(spec.clone());
                    }
                    changed
                });
            }
            None => {
                let files = layout.instance(spec.id);
                actors.insert(
                    spec.id,
                    instance::spawn(spec.id, files, ctx.clone(), Some(spec.clone())),
                );
            }
        }
    }
    // Departing instances keep their actor and last spec (a live one keeps
    // running until its guest has left); the actor learns where to.
    let departing: HashMap<ServerId, &Departure> =
        desired.departures.iter().map(|d| (d.id, d)).collect();
    for (id, actor) in actors.iter() {
        let departure = departing.get(id).map(|d| (*d).clone());
        actor.departure.send_if_modified(|current| {
            let changed = *current != departure;
            if changed {
                current.clone_from(&departure);
            }
            changed
        });
        if !wanted.contains(id) && departure.is_none() {
            actor
                .spec
                .send_if_modified(|current| current.take().is_some());
        }
    }
    for id in layout.present_instances() {
        if !wanted.contains(&id) && !departing.contains_key(&id) && !actors.contains_key(&id) {
            tracing::info!(instance = %id, "removing instance that is no longer desired");
            actors.insert(
                id,
                instance::spawn(id, layout.instance(id), ctx.clone(), None),
            );
        }
    }
}

/// Sends the host's full report, with the traffic counters of its NICs,
/// whenever an observation changes and at least every `interval` (a
/// heartbeat and the metering period).
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
