//! Security groups, their rules, and the servers that use them. Creating a
//! group or a rule counts against the project's quota inside the
//! transaction that inserts it (the `default` group and its first rules,
//! made on demand, are never refused).

use super::quotas::{check_quota, DEFAULT_SECURITY_GROUP};
use super::rows::{parse, parse_opt, time};
use super::{found, now_ms, OrConflict, Store, StoreError, StoreResult};
use nubis_api::quotas::QuotaUsage;
use nubis_api::security_groups::{Direction, Prefix, Rule, SecurityGroup};
use nubis_api::{ProjectId, SecurityGroupId, SecurityGroupRuleId};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::net::Ipv4Addr;

/// A validated rule to insert.
pub struct NewRule {
    pub direction: Direction,
    pub protocol: nubis_api::security_groups::Protocol,
    pub ports: Option<(u16, u16)>,
    pub remote_cidr: Option<Prefix>,
    pub remote_group: Option<SecurityGroupId>,
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

fn rule_from_row(row: &AnyRow) -> StoreResult<Rule> {
    let direction: String = row.try_get("direction")?;
    let protocol: String = row.try_get("protocol")?;
    let port = |col: &str| -> StoreResult<Option<u16>> {
        let v: Option<i64> = row.try_get(col)?;
        Ok(v.and_then(|v| u16::try_from(v).ok()))
    };
    let cidr: Option<String> = row.try_get("remote_cidr")?;
    Ok(Rule {
        id: parse(row, "id")?,
        direction: if direction == "egress" {
            Direction::Egress
        } else {
            Direction::Ingress
        },
        protocol: protocol.parse().map_err(StoreError::Corrupt)?,
        port_min: port("port_min")?,
        port_max: port("port_max")?,
        remote_cidr: cidr
            .map(|c| c.parse())
            .transpose()
            .map_err(StoreError::Corrupt)?,
        remote_group: parse_opt(row, "remote_group_id")?,
    })
}

impl Store {
    async fn group_rules(&self, group: SecurityGroupId) -> StoreResult<Vec<Rule>> {
        let rows = sqlx::query(
            "SELECT * FROM security_group_rules WHERE group_id = $1 ORDER BY created_at, id",
        )
        .bind(group.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rule_from_row).collect()
    }

    async fn group_from_row(&self, row: &AnyRow) -> StoreResult<SecurityGroup> {
        let id: SecurityGroupId = parse(row, "id")?;
        Ok(SecurityGroup {
            id,
            name: row.try_get("name")?,
            project: parse(row, "project_id")?,
            description: row.try_get("description")?,
            rules: self.group_rules(id).await?,
            created_at: time(row, "created_at")?,
        })
    }

    pub async fn create_security_group(
        &self,
        project: ProjectId,
        name: &str,
        description: &str,
    ) -> StoreResult<SecurityGroup> {
        let id = SecurityGroupId::new();
        let mut tx = self.begin_write().await?;
        if name != DEFAULT_SECURITY_GROUP {
            let one = QuotaUsage {
                security_groups: 1,
                ..QuotaUsage::default_zero()
            };
            check_quota(&mut tx, project, &one).await?;
        }
        let res = sqlx::query(
            "INSERT INTO security_groups (id, project_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .bind(name)
        .bind(description)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        res.or_conflict(|| {
            format!("a security group named '{name}' already exists in this project")
        })?;
        tx.commit().await?;
        self.security_group(project, &id.to_string()).await
    }

    /// A group of `project` by id or name.
    pub async fn security_group(
        &self,
        project: ProjectId,
        id_or_name: &str,
    ) -> StoreResult<SecurityGroup> {
        let row = sqlx::query(
            "SELECT * FROM security_groups WHERE (id = $1 OR name = $1) AND project_id = $2",
        )
        .bind(id_or_name)
        .bind(project.to_string())
        .fetch_optional(self.pool())
        .await?;
        self.group_from_row(&found(row)?).await
    }

    /// A group regardless of project (for agents' desired state).
    pub async fn security_group_by_id(&self, id: SecurityGroupId) -> StoreResult<SecurityGroup> {
        let row = sqlx::query("SELECT * FROM security_groups WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        self.group_from_row(&found(row)?).await
    }

    pub async fn list_security_groups(
        &self,
        project: ProjectId,
    ) -> StoreResult<Vec<SecurityGroup>> {
        let rows = sqlx::query("SELECT * FROM security_groups WHERE project_id = $1 ORDER BY name")
            .bind(project.to_string())
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.group_from_row(&row).await?);
        }
        Ok(out)
    }

    /// The project's `default` group, made on first use: all egress, SSH and
    /// ICMP in from anywhere, anything in from members of the group.
    pub async fn ensure_default_security_group(
        &self,
        project: ProjectId,
    ) -> StoreResult<SecurityGroup> {
        if let Ok(g) = self.security_group(project, "default").await {
            return Ok(g);
        }
        let group = match self
            .create_security_group(project, "default", "Default security group")
            .await
        {
            Ok(g) => g,
            Err(StoreError::Conflict(_)) => return self.security_group(project, "default").await,
            Err(e) => return Err(e),
        };
        use nubis_api::security_groups::Protocol;
        let any: Prefix = "0.0.0.0/0".parse().map_err(StoreError::Corrupt)?;
        for rule in [
            NewRule {
                direction: Direction::Egress,
                protocol: Protocol::Any,
                ports: None,
                remote_cidr: Some(any),
                remote_group: None,
            },
            NewRule {
                direction: Direction::Ingress,
                protocol: Protocol::Tcp,
                ports: Some((22, 22)),
                remote_cidr: Some(any),
                remote_group: None,
            },
            NewRule {
                direction: Direction::Ingress,
                protocol: Protocol::Icmp,
                ports: None,
                remote_cidr: Some(any),
                remote_group: None,
            },
            NewRule {
                direction: Direction::Ingress,
                protocol: Protocol::Any,
                ports: None,
                remote_cidr: None,
                remote_group: Some(group.id),
            },
        ] {
            let mut conn = self.writer().acquire().await?;
            insert_rule(&mut conn, group.id, &rule).await?;
        }
        self.security_group(project, "default").await
    }

    /// Adds a rule if the project's `security_group_rules` quota has room.
    pub async fn add_rule(&self, group: SecurityGroupId, rule: &NewRule) -> StoreResult<Rule> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT project_id FROM security_groups WHERE id = $1")
            .bind(group.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let project: ProjectId = parse(&found(row)?, "project_id")?;
        let one = QuotaUsage {
            security_group_rules: 1,
            ..QuotaUsage::default_zero()
        };
        check_quota(&mut tx, project, &one).await?;
        let rule = insert_rule(&mut tx, group, rule).await?;
        tx.commit().await?;
        Ok(rule)
    }

    pub async fn delete_rule(
        &self,
        group: SecurityGroupId,
        rule: SecurityGroupRuleId,
    ) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM security_group_rules WHERE id = $1 AND group_id = $2")
            .bind(rule.to_string())
            .bind(group.to_string())
            .execute(self.writer())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Deletes a group no server uses (`default` stays).
    pub async fn delete_security_group(
        &self,
        project: ProjectId,
        id: SecurityGroupId,
    ) -> StoreResult<()> {
        let group = self.security_group(project, &id.to_string()).await?;
        if group.name == "default" {
            return Err(StoreError::Conflict(
                "the default security group cannot be deleted".into(),
            ));
        }
        let used: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM server_security_groups WHERE group_id = $1")
                .bind(id.to_string())
                .fetch_one(self.pool())
                .await?
                .try_get("n")?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "{used} server(s) still use this security group"
            )));
        }
        sqlx::query("DELETE FROM security_groups WHERE id = $1 AND project_id = $2")
            .bind(id.to_string())
            .bind(project.to_string())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The addresses of every live server in a group (for remote-group rules).
    pub async fn group_member_addresses(
        &self,
        group: SecurityGroupId,
    ) -> StoreResult<Vec<Ipv4Addr>> {
        let rows = sqlx::query(
            "SELECT p.ip FROM server_security_groups sg JOIN servers s ON s.id = sg.server_id \
             JOIN ports p ON p.server_id = s.id WHERE sg.group_id = $1 AND s.deleting = 0 ORDER BY p.ip",
        )
        .bind(group.to_string())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("ip").ok()?.parse().ok())
            .collect())
    }
}

/// Inserts a rule (no quota check: the caller's job).
async fn insert_rule(
    conn: &mut sqlx::AnyConnection,
    group: SecurityGroupId,
    rule: &NewRule,
) -> StoreResult<Rule> {
    let id = SecurityGroupRuleId::new();
    sqlx::query(
        "INSERT INTO security_group_rules (id, group_id, direction, protocol, port_min, port_max, \
         remote_cidr, remote_group_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id.to_string())
    .bind(group.to_string())
    .bind(direction_str(rule.direction))
    .bind(rule.protocol.as_str())
    .bind(rule.ports.map(|p| i64::from(p.0)))
    .bind(rule.ports.map(|p| i64::from(p.1)))
    .bind(rule.remote_cidr.map(|c| c.to_string()))
    .bind(rule.remote_group.map(|g| g.to_string()))
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT * FROM security_group_rules WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&mut *conn)
        .await?;
    rule_from_row(&row)
}
