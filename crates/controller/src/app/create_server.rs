//! Creating a server: check the request against images, key pairs, networks
//! and security groups, then insert it with its host chosen and claimed in
//! the same transaction (see `store::placement`).

use super::AppError;
use crate::clock::Clock;
use crate::scheduler::PlacementSettings;
use crate::store::{NewPort, NewServer, Placement, Schedule, ServerRecord, Store};
use nubis_api::images::{ImageFormat, ImageStatus};
use nubis_api::networks::Network;
use nubis_api::servers::{CreateServer, NetworkRequest, RequestedSize, MAX_NICS};
use nubis_api::{ProjectId, SecurityGroupId};

const GIB: u64 = 1024 * 1024 * 1024;

/// At most this many security groups per server.
const MAX_SECURITY_GROUPS: usize = 16;

/// What creating a server needs beside the request.
pub struct CreateContext<'a> {
    pub store: &'a Store,
    /// The zone of the `default` network made on first use.
    pub dns_zone: &'a str,
    /// "Now" for rental terms (leases, usage).
    pub clock: &'a Clock,
    pub placement: &'a PlacementSettings,
}

/// Creates a server of `project` as `req` asks; the record is placed on a
/// host (`NoValidHost` from the store when none can take it).
pub async fn create_server(
    ctx: &CreateContext<'_>,
    project: ProjectId,
    req: &CreateServer,
) -> Result<ServerRecord, AppError> {
    let store = ctx.store;
    let (flavor, (vcpus, memory_mib, disk_gib)) = match req
        .requested_size()
        .map_err(|e| AppError::Invalid(e.to_string()))?
    {
        RequestedSize::Flavor => {
            let name = req.flavor.as_deref().unwrap_or_default();
            let f = store
                .flavor(name)
                .await
                .map_err(AppError::from_ref("flavor", name))?;
            let size = (f.vcpus, f.memory_mib, f.disk_gib);
            (Some(f), size)
        }
        RequestedSize::Explicit {
            vcpus,
            memory_mib,
            disk_gib,
        } => (None, (vcpus.get(), memory_mib.get(), disk_gib.get())),
    };
    let lease_expires_at = req
        .lease
        .map(|l| l.expiry(ctx.clock.now()))
        .transpose()
        .map_err(|e| AppError::Invalid(e.to_string()))?;
    let image = store
        .image_visible(project, &req.image)
        .await
        .map_err(AppError::from_ref("image", &req.image))?;
    if !image.format.is_bootable() {
        return Err(AppError::Invalid(format!(
            "image '{}' is a {} image, not a disk image (nor an ISO)",
            image.name,
            image.format.as_str()
        )));
    }
    if image.status != ImageStatus::Active {
        return Err(AppError::Invalid(format!(
            "image '{}' has no file yet; upload it first",
            image.name
        )));
    }
    // A server made from an ISO gets a blank disk: any size will do.
    let image_bytes = match image.format {
        ImageFormat::Iso => 0,
        _ => image.virtual_size.unwrap_or(0),
    };
    if image_bytes > disk_gib * GIB {
        return Err(AppError::Invalid(format!(
            "disk_gib {disk_gib} is smaller than the image ({image_bytes} bytes)"
        )));
    }
    let key = match &req.key_name {
        Some(name) => Some(
            store
                .keypair(project, name)
                .await
                .map_err(AppError::from_ref("key pair", name))?,
        ),
        None => None,
    };
    let networks = resolve_networks(ctx, project, req.networks.as_deref()).await?;
    let security_groups = resolve_groups(store, project, req.security_groups.as_deref()).await?;
    let hints = req.scheduler_hints.clone().unwrap_or_default();
    let group = match &hints.group {
        Some(reference) => Some(
            store
                .server_group(project, reference)
                .await
                .map_err(AppError::from_ref("server group", reference))?
                .id,
        ),
        None => None,
    };
    let record = store
        .create_server_at(
            &NewServer {
                project,
                name: req.name.as_str(),
                image: image.id,
                flavor: flavor.as_ref().map(|f| f.id),
                vcpus,
                memory_mib,
                disk_gib,
                host: Placement::Schedule(Schedule {
                    settings: *ctx.placement,
                    accel: hints.accel,
                    group,
                }),
                ports: networks
                    .iter()
                    .map(|(network, fixed_ip)| NewPort {
                        network,
                        fixed_ip: *fixed_ip,
                    })
                    .collect(),
                key_name: key.as_ref().map(|k| k.name.as_str()),
                key_data: key.as_ref().map(|k| k.public_key.as_str()),
                user_data: req.user_data.clone().map(String::from),
                config_drive: req.config_drive,
                security_groups,
                bandwidth: req
                    .bandwidth
                    .or_else(|| flavor.as_ref().and_then(|f| f.bandwidth))
                    .unwrap_or_default(),
                traffic_quota: req.traffic_quota,
                lease_expires_at,
            },
            ctx.clock.now(),
        )
        .await?;
    Ok(record)
}

/// Resolves the requested NICs (default: one on the `default` network) and
/// checks fixed addresses against their subnets.
async fn resolve_networks(
    ctx: &CreateContext<'_>,
    project: ProjectId,
    requested: Option<&[NetworkRequest]>,
) -> Result<Vec<(Network, Option<std::net::Ipv4Addr>)>, AppError> {
    let store = ctx.store;
    let Some(requested) = requested else {
        let default = store.ensure_default_network(project, ctx.dns_zone).await?;
        return Ok(vec![(default, None)]);
    };
    if requested.is_empty() || requested.len() > MAX_NICS {
        return Err(AppError::Invalid(format!(
            "networks must list 1 to {MAX_NICS} networks"
        )));
    }
    let mut out = Vec::new();
    for nic in requested {
        let network = if nic.network == "default" {
            store.ensure_default_network(project, ctx.dns_zone).await?
        } else {
            store
                .network(project, &nic.network)
                .await
                .map_err(AppError::from_ref("network", &nic.network))?
        };
        if let Some(ip) = nic.fixed_ip {
            crate::address_space::check_fixed_ip(network.cidr, network.gateway, ip).map_err(
                |v| AppError::AddressNotAllowed(format!("network {}: {v}", network.name)),
            )?;
        }
        out.push((network, nic.fixed_ip));
    }
    Ok(out)
}

/// Resolves the requested security groups (default: the `default` group).
async fn resolve_groups(
    store: &Store,
    project: ProjectId,
    requested: Option<&[String]>,
) -> Result<Vec<SecurityGroupId>, AppError> {
    let default = ["default".to_string()];
    let requested = requested.unwrap_or(&default);
    if requested.len() > MAX_SECURITY_GROUPS {
        return Err(AppError::Invalid(format!(
            "at most {MAX_SECURITY_GROUPS} security groups per server"
        )));
    }
    let mut ids = Vec::new();
    for name in requested {
        let group = if name == "default" {
            store.ensure_default_security_group(project).await?
        } else {
            store
                .security_group(project, name)
                .await
                .map_err(AppError::from_ref("security group", name))?
        };
        if !ids.contains(&group.id) {
            ids.push(group.id);
        }
    }
    Ok(ids)
}
