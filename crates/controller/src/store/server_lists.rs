//! Server lists, set-based: one query for a page of servers, one for the
//! addresses of every server on it, one for their security groups — never a
//! query per server, so a page of 1000 costs three queries, not 2001.
//!
//! Pages walk servers in `(created_at, id)` order (index
//! `servers_by_project`); a marker is the id of the last server of the
//! previous page, like OpenStack's `marker`.

use super::in_lists::{placeholders, IN_CHUNK};
use super::rows::parse;
use super::server_record::{server_from_row, ServerRecord};
use super::{Store, StoreError, StoreResult};
use nubis_api::networks::ServerAddress;
use nubis_api::{ProjectId, ServerId};
use sqlx::Row;
use std::collections::HashMap;

/// Whose servers a list holds.
#[derive(Clone, Copy, Debug)]
pub enum ListScope {
    Project(ProjectId),
    /// Every project's (admins).
    All,
}

/// Why a page cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The marker names no server in the list's scope (unknown, deleted,
    /// or another project's: these are not told apart).
    #[error("marker {0} not found")]
    UnknownMarker(ServerId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl Store {
    /// Up to `limit` servers of `scope` after the server `marker` (from the
    /// start without one), oldest first.
    pub async fn list_servers_page(
        &self,
        scope: ListScope,
        marker: Option<ServerId>,
        limit: u32,
    ) -> Result<Vec<ServerRecord>, PageError> {
        let mut sql = String::from("SELECT * FROM servers WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        fn bind(value: String, binds: &mut Vec<String>) -> String {
            binds.push(value);
            format!("${}", binds.len())
        }
        if let ListScope::Project(project) = scope {
            let p = bind(project.to_string(), &mut binds);
            sql.push_str(&format!(" AND project_id = {p}"));
        }
        if let Some(marker) = marker {
            // The marker's own position, read in the same scope, so another
            // project's id is as unknown as a made-up one.
            let owner: Option<String> =
                sqlx::query_scalar("SELECT project_id FROM servers WHERE id = $1")
                    .bind(marker.to_string())
                    .fetch_optional(self.pool())
                    .await?;
            let visible = match (scope, owner) {
                (_, None) => false,
                (ListScope::All, Some(_)) => true,
                (ListScope::Project(p), Some(owner)) => owner == p.to_string(),
            };
            if !visible {
                return Err(PageError::UnknownMarker(marker));
            }
            let m = bind(marker.to_string(), &mut binds);
            sql.push_str(&format!(
                " AND (created_at > (SELECT created_at FROM servers WHERE id = {m}) \
                 OR (created_at = (SELECT created_at FROM servers WHERE id = {m}) AND id > {m}))"
            ));
        }
        sql.push_str(&format!(" ORDER BY created_at, id LIMIT {limit}"));
        // Only placeholders are formatted in; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in &binds {
            query = query.bind(value.clone());
        }
        let rows = query.fetch_all(self.pool()).await?;
        Ok(rows
            .iter()
            .map(server_from_row)
            .collect::<StoreResult<_>>()?)
    }

    /// The addresses of each of `servers` (NIC order), in one query per
    /// `IN_CHUNK` servers.
    pub async fn addresses_of(
        &self,
        servers: &[ServerId],
    ) -> StoreResult<HashMap<ServerId, Vec<ServerAddress>>> {
        let mut out: HashMap<ServerId, Vec<ServerAddress>> = HashMap::new();
        for chunk in servers.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT p.server_id, p.ip, p.mac, n.id AS network_id, n.name AS network_name \
                 FROM ports p JOIN networks n ON n.id = p.network_id \
                 WHERE p.server_id IN ({}) ORDER BY p.server_id, p.nic_index",
                placeholders(1, chunk.len())
            );
            // Only placeholders are formatted in; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(self.pool()).await? {
                let (server, address) = super::networks::address_from_row(&row)?;
                out.entry(server).or_default().push(address);
            }
        }
        Ok(out)
    }

    /// The names of the security groups of each of `servers` (by name).
    pub async fn security_group_names_of(
        &self,
        servers: &[ServerId],
    ) -> StoreResult<HashMap<ServerId, Vec<String>>> {
        let mut out: HashMap<ServerId, Vec<String>> = HashMap::new();
        for chunk in servers.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT sg.server_id, g.name FROM server_security_groups sg \
                 JOIN security_groups g ON g.id = sg.group_id \
                 WHERE sg.server_id IN ({}) ORDER BY sg.server_id, g.name",
                placeholders(1, chunk.len())
            );
            // Only placeholders are formatted in; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(self.pool()).await? {
                out.entry(parse(&row, "server_id")?)
                    .or_default()
                    .push(row.try_get("name")?);
            }
        }
        Ok(out)
    }
}
