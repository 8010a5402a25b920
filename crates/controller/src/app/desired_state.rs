//! A host's desired state: what its agent must run (instances, their
//! networks with DNS and VXLAN peers, security groups, floating IPs) and
//! the moves it takes part in. Built from set-based reads (a handful of
//! statements whatever the number of servers), since every change in a
//! project makes each of its hosts compute this again.

use super::AppError;
use crate::store::host_desired::PortRow;
use crate::store::overlay::peers_from_ports;
use crate::store::Store;
use nubis_api::agent::{
    DesiredState, DnsRecord, FloatingIpSpec, GuestConfig, HostNetwork, ImageRef, InstanceSpec,
    NamedKey, NetworkSpec, NicSpec, Overlay, RuleRemote, RuleSpec, SecurityGroupSpec,
};
use nubis_api::bandwidth::RateLimit;
use nubis_api::images::{Image, ImageFormat};
use nubis_api::networks::{dns_label, server_dns_name};
use nubis_api::{HostId, ImageId, NetworkId, SecurityGroupId, ServerId};
use std::collections::{BTreeSet, HashMap};

/// What `host` should run, with its networks' peers (revision 0: the
/// caller fingerprints it). `throttle` is the rate of servers over their
/// traffic quota under the throttle policy.
pub async fn host_desired_state(
    store: &Store,
    host: HostId,
    throttle: RateLimit,
) -> Result<DesiredState, AppError> {
    let mut moves = super::moves::host_moves(store, host)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let servers: Vec<_> = store
        .servers_on_host(host)
        .await?
        .into_iter()
        .filter(|s| !s.deleting)
        .collect();
    // A server leaving this host (live: its guest runs here until the
    // switch-over) keeps its networks and groups here until released.
    let departing: Vec<ServerId> = moves.departures.iter().map(|d| d.id).collect();
    let all: Vec<ServerId> = servers
        .iter()
        .map(|s| s.id)
        .chain(departing.iter().copied())
        .collect();
    let mut ports = store.ports_of_servers(&all).await?;
    let mut groups = store.security_groups_of_servers(&all).await?;
    let images = images_of(store, servers.iter().map(|s| s.image)).await?;
    let network_ids: Vec<NetworkId> = ports
        .values()
        .flatten()
        .map(|(_, network, _, _)| *network)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let networks = store.networks_by_ids(&network_ids).await?;
    let spec_of = |id: NetworkId| -> Result<NetworkSpec, AppError> {
        let n = &networks
            .get(&id)
            .ok_or_else(|| AppError::Internal(format!("network {id} of a port is gone")))?
            .network;
        Ok(NetworkSpec {
            id: n.id,
            cidr: n.cidr,
            gateway: n.gateway,
            domain: n.domain.clone(),
        })
    };

    let mut instances = Vec::new();
    for server in servers {
        let image = image_of(&images, server.image)?;
        let disk_image = image_ref(image);
        let kernel = image
            .kernel
            .map(|id| image_of(&images, id).map(image_ref))
            .transpose()?;
        let initrd = image
            .initrd
            .map(|id| image_of(&images, id).map(image_ref))
            .transpose()?;
        let nics = ports
            .remove(&server.id)
            .unwrap_or_default()
            .into_iter()
            .map(|(port, network, mac, ip): PortRow| {
                Ok(NicSpec {
                    port,
                    network: spec_of(network)?,
                    mac,
                    ip,
                })
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        let guest = GuestConfig {
            hostname: dns_label(&server.name),
            project: server.project,
            keys: match (&server.key_name, &server.key_data) {
                (Some(name), Some(key)) => vec![NamedKey {
                    name: name.clone(),
                    public_key: key.clone(),
                }],
                _ => Vec::new(),
            },
            user_data: server.user_data.clone(),
            config_drive: server.config_drive,
            config_format: image.config_format,
        };
        // An ISO server boots its ISO from the CD-ROM drive until ejected.
        let cdrom = (server.cdrom_attached && disk_image.format == ImageFormat::Iso)
            .then(|| disk_image.clone());
        instances.push(InstanceSpec {
            id: server.id,
            name: server.name.clone(),
            vcpus: server.vcpus,
            memory_mib: server.memory_mib,
            disk_gib: server.disk_gib,
            disk_image,
            kernel,
            initrd,
            cmdline: image.cmdline.clone(),
            power: server.power,
            reboot_generation: server.reboot_generation,
            nics,
            guest,
            security_groups: groups.remove(&server.id).unwrap_or_default(),
            network_limits: server.network_limits(throttle),
            cdrom,
            generation: moves.generations.get(&server.id).copied().unwrap_or(1),
            arrival: moves.arrivals.remove(&server.id),
        });
    }
    let departing_groups: Vec<SecurityGroupId> = departing
        .iter()
        .flat_map(|id| groups.remove(id).unwrap_or_default())
        .collect();

    let own_tunnel = store.host_tunnel_ip(host).await?;
    let mut dns = store.networks_dns(&network_ids).await?;
    let mut remote = store.networks_remote_ports(&network_ids, host).await?;
    let mut host_networks = Vec::new();
    for id in &network_ids {
        let with_vni = &networks[id];
        let network = &with_vni.network;
        let mut records: Vec<DnsRecord> = dns
            .remove(id)
            .unwrap_or_default()
            .into_iter()
            .map(|(server, project, ip)| DnsRecord {
                name: server_dns_name(&server, &project, &network.dns_zone),
                ip,
            })
            .collect();
        // A stable order keeps the state's fingerprint stable.
        records.sort_by(|a, b| (&a.name, a.ip).cmp(&(&b.name, b.ip)));
        host_networks.push(HostNetwork {
            spec: spec_of(*id)?,
            dns: records,
            overlay: Some(Overlay {
                vni: with_vni.vni,
                peers: peers_from_ports(remote.remove(id).unwrap_or_default(), own_tunnel),
            }),
        });
    }
    let floating_ips = store
        .host_floating_ips(host)
        .await?
        .into_iter()
        .map(|(ip, fixed_ip)| FloatingIpSpec { ip, fixed_ip })
        .collect();
    let security_groups = group_specs(store, &instances, departing_groups).await?;
    Ok(DesiredState {
        revision: 0,
        instances,
        networks: host_networks,
        floating_ips,
        security_groups,
        departures: moves.departures,
        released: moves.released,
    })
}

/// The images `ids` and the kernels and initrds they boot with.
async fn images_of(
    store: &Store,
    ids: impl Iterator<Item = ImageId>,
) -> Result<HashMap<ImageId, Image>, AppError> {
    let disks: Vec<ImageId> = ids.collect::<BTreeSet<_>>().into_iter().collect();
    let mut images = store.images_by_ids(&disks).await?;
    let parts: Vec<ImageId> = images
        .values()
        .flat_map(|i| [i.kernel, i.initrd])
        .flatten()
        .filter(|id| !images.contains_key(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    images.extend(store.images_by_ids(&parts).await?);
    Ok(images)
}

fn image_of(images: &HashMap<ImageId, Image>, id: ImageId) -> Result<&Image, AppError> {
    images
        .get(&id)
        .ok_or_else(|| AppError::Internal(format!("image {id} of a server is gone")))
}

fn image_ref(image: &Image) -> ImageRef {
    ImageRef {
        id: image.id,
        format: image.format,
        checksum: image.checksum.clone().unwrap_or_default(),
        size: image.size.unwrap_or(0),
    }
}

/// The groups the instances (and `more`) use, with remote groups resolved to the
/// current addresses of their members (on any host).
async fn group_specs(
    store: &Store,
    instances: &[InstanceSpec],
    more: Vec<SecurityGroupId>,
) -> Result<Vec<SecurityGroupSpec>, AppError> {
    let ids: BTreeSet<SecurityGroupId> = instances
        .iter()
        .flat_map(|i| i.security_groups.iter().copied())
        .chain(more)
        .collect();
    let mut specs = Vec::new();
    for id in ids {
        let group = store.security_group_by_id(id).await?;
        let mut rules = Vec::new();
        for rule in &group.rules {
            let remote = match (rule.remote_group, rule.remote_cidr) {
                (Some(g), _) => RuleRemote::Addresses(store.group_member_addresses(g).await?),
                (None, Some(cidr)) => RuleRemote::Cidr(cidr),
                (None, None) => RuleRemote::Cidr(nubis_api::security_groups::Prefix {
                    addr: std::net::Ipv4Addr::UNSPECIFIED,
                    len: 0,
                }),
            };
            rules.push(RuleSpec {
                direction: rule.direction,
                protocol: rule.protocol,
                ports: rule.port_min.map(|lo| (lo, rule.port_max.unwrap_or(lo))),
                remote,
            });
        }
        specs.push(SecurityGroupSpec { id, rules });
    }
    Ok(specs)
}
