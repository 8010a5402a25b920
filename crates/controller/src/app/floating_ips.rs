//! Associating floating IPs with servers: the rules shared by `/v1`'s
//! `PATCH /v1/floating-ips/{id}` and Neutron's `PUT /v2.0/floatingips/{id}`.

use super::AppError;
use crate::store::{Store, StoreError};
use nubis_api::floating_ips::FloatingIp;
use nubis_api::{FloatingIpId, ProjectId, ServerId};

/// Maps floating IP `id` of `project` to `server` (already resolved in the
/// same project), or unmaps it with `None`. A server being deleted is a
/// conflict; one without an address is refused. An unknown floating IP is
/// the store's `NotFound`. The caller tells agents (desired state changed).
pub async fn set_server(
    store: &Store,
    project: ProjectId,
    id: FloatingIpId,
    server: Option<ServerId>,
) -> Result<FloatingIp, AppError> {
    store.floating_ip(project, id).await?;
    if let Some(server_id) = server {
        let server = store.server_by_ref(project, &server_id.to_string()).await?;
        if server.deleting {
            return Err(StoreError::Conflict("the server is being deleted".into()).into());
        }
        if store.server_ports(server.id).await?.is_empty() {
            return Err(AppError::Invalid(
                "the server has no address to map to".into(),
            ));
        }
    }
    Ok(store.set_floating_ip_server(project, id, server).await?)
}
