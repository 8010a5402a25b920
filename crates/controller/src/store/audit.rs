//! The audit trail's rows: written in batches by the audit writer
//! (`crate::audit`), read newest first with filters and a marker, purged
//! past the retention period.

use super::rows::{parse_opt, time};
use super::{Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use nubis_api::audit::{AuditEvent, Initiator, Outcome};
use nubis_api::ProjectId;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Which records to read. Every field left `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// A user id, or a user name.
    pub user: Option<String>,
    pub project: Option<ProjectId>,
    /// An exact action, e.g. `server.create`.
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    /// From this time on (inclusive).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (exclusive).
    pub until: Option<DateTime<Utc>>,
    /// Only records older than the one with this id (the previous page's
    /// last): the pagination marker.
    pub before: Option<String>,
}

/// A value bound to a query built from a filter.
enum Bind {
    Text(String),
    Int(i64),
}

impl AuditFilter {
    /// The WHERE clause (empty or starting with ` WHERE`) and its values.
    fn clause(&self) -> (String, Vec<Bind>) {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        let mut add = |sql: &str, value: Bind| {
            binds.push(value);
            conditions.push(sql.replace('?', &format!("${}", binds.len())));
        };
        if let Some(user) = &self.user {
            // A name that happens to look like a UUID is looked up as an id:
            // names are for people, and ids are what `--json` shows.
            let column = if uuid::Uuid::parse_str(user).is_ok() {
                "user_id = ?"
            } else {
                "user_name = ?"
            };
            add(column, Bind::Text(user.clone()));
        }
        if let Some(project) = self.project {
            add("project_id = ?", Bind::Text(project.to_string()));
        }
        if let Some(action) = &self.action {
            add("action = ?", Bind::Text(action.clone()));
        }
        if let Some(outcome) = self.outcome {
            add("outcome = ?", Bind::Text(outcome.as_str().to_owned()));
        }
        if let Some(since) = self.since {
            add("time >= ?", Bind::Int(since.timestamp_millis()));
        }
        if let Some(until) = self.until {
            add("time < ?", Bind::Int(until.timestamp_millis()));
        }
        if let Some(before) = &self.before {
            add("id < ?", Bind::Text(before.clone()));
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        (clause, binds)
    }
}

fn event_from_row(row: &AnyRow) -> StoreResult<AuditEvent> {
    let initiator: String = row.try_get("initiator")?;
    let outcome: String = row.try_get("outcome")?;
    let status: i64 = row.try_get("status")?;
    Ok(AuditEvent {
        id: row.try_get("id")?,
        time: time(row, "time")?,
        request_id: row.try_get("request_id")?,
        initiator: Initiator::parse(&initiator)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown initiator '{initiator}'")))?,
        user: parse_opt(row, "user_id")?,
        user_name: row.try_get("user_name")?,
        project: parse_opt(row, "project_id")?,
        host: parse_opt(row, "host_id")?,
        source_address: row.try_get("source_address")?,
        user_agent: row.try_get("user_agent")?,
        action: row.try_get("action")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        object_type: row.try_get("object_type")?,
        object_id: row.try_get("object_id")?,
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("bad status {status}")))?,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown outcome '{outcome}'")))?,
        error: row.try_get("error")?,
    })
}

impl Store {
    /// Writes records in one transaction (all or none).
    pub async fn insert_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO audit_events (id, time, request_id, initiator, user_id, user_name, \
                 project_id, host_id, source_address, user_agent, action, method, path, \
                 object_type, object_id, status, outcome, error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            )
            .bind(&e.id)
            .bind(e.time.timestamp_millis())
            .bind(&e.request_id)
            .bind(e.initiator.as_str())
            .bind(e.user.map(|u| u.to_string()))
            .bind(e.user_name.as_deref())
            .bind(e.project.map(|p| p.to_string()))
            .bind(e.host.map(|h| h.to_string()))
            .bind(e.source_address.as_deref())
            .bind(e.user_agent.as_deref())
            .bind(&e.action)
            .bind(&e.method)
            .bind(&e.path)
            .bind(e.object_type.as_deref())
            .bind(e.object_id.as_deref())
            .bind(i64::from(e.status))
            .bind(e.outcome.as_str())
            .bind(e.error.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// At most `limit` records matching `filter`, newest first.
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
        let (clause, binds) = filter.clause();
        let sql = format!(
            "SELECT * FROM audit_events{clause} ORDER BY id DESC LIMIT {}",
            limit.max(1)
        );
        // Safe: the SQL is made of fixed fragments and numbered
        // placeholders; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            query = match b {
                Bind::Text(s) => query.bind(s),
                Bind::Int(i) => query.bind(i),
            };
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Removes the records older than `before`; returns how many.
    pub async fn purge_audit_events(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM audit_events WHERE time < $1")
            .bind(before.timestamp_millis())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::AuditFilter;

    #[test]
    fn filters_number_their_placeholders_in_order() {
        let empty = AuditFilter::default().clause();
        assert_eq!(empty.0, "");
        let f = AuditFilter {
            user: Some("alice".into()),
            action: Some("server.create".into()),
            before: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            f.clause().0,
            " WHERE user_name = $1 AND action = $2 AND id < $3"
        );
        let by_id = AuditFilter {
            user: Some(uuid::Uuid::new_v4().to_string()),
            ..Default::default()
        };
        assert_eq!(by_id.clause().0, " WHERE user_id = $1");
    }
}
