//! Security-group rules shared by `/v1` and Neutron's API: what a new
//! group or rule must satisfy, and how a rule's remote is resolved.

use super::AppError;
use crate::store::security_groups::NewRule;
use crate::store::Store;
use nubis_api::security_groups::{CreateRule, Rule, SecurityGroup, MAX_DESCRIPTION};
use nubis_api::ProjectId;

/// Creates a group after checking its description.
pub async fn create_group(
    store: &Store,
    project: ProjectId,
    name: &str,
    description: &str,
) -> Result<SecurityGroup, AppError> {
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        return Err(AppError::Invalid(format!(
            "description must be at most {MAX_DESCRIPTION} characters without control characters"
        )));
    }
    Ok(store
        .create_security_group(project, name, description)
        .await?)
}

/// Adds `req` to `group` (an id or name of `project`'s groups; unknown is
/// the store's `NotFound`). Ports must suit the protocol; a remote is a
/// CIDR or a group of the same project, not both; neither means any
/// address (`0.0.0.0/0`). The caller tells agents (desired state changed).
pub async fn add_rule(
    store: &Store,
    project: ProjectId,
    group: &str,
    req: &CreateRule,
) -> Result<Rule, AppError> {
    let group = store.security_group(project, group).await?;
    let ports = req.ports().map_err(AppError::Invalid)?;
    if req.remote_cidr.is_some() && req.remote_group.is_some() {
        return Err(AppError::Invalid(
            "give remote_cidr or remote_group, not both".into(),
        ));
    }
    let remote_group = match &req.remote_group {
        Some(r) => Some(
            store
                .security_group(project, r)
                .await
                .map_err(AppError::from_ref("security group", r))?
                .id,
        ),
        None => None,
    };
    let remote_cidr = match (req.remote_cidr, remote_group) {
        (None, None) => Some(
            "0.0.0.0/0"
                .parse()
                .map_err(|e: String| AppError::Internal(e))?,
        ),
        (cidr, _) => cidr,
    };
    Ok(store
        .add_rule(
            group.id,
            &NewRule {
                direction: req.direction,
                protocol: req.protocol,
                ports,
                remote_cidr,
                remote_group,
            },
        )
        .await?)
}
