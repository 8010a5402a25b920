//! A server's rental terms: bandwidth, traffic quota and lease. Changing
//! them and enforcing leases (stop at expiry, delete after the grace period).

use super::rows::{big, parse, to_json};
use super::traffic::{enforce_quota, StateChange};
use super::{events, usage, Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use nubis_api::bandwidth::Bandwidth;
use nubis_api::events::EventKind;
use nubis_api::traffic::TrafficQuota;
use nubis_api::ServerId;

/// What `update_terms` changes; `None` leaves a term as it is.
#[derive(Clone, Debug, Default)]
pub struct TermsUpdate {
    pub bandwidth: Option<Bandwidth>,
    /// `Some(None)` removes the quota.
    pub traffic_quota: Option<Option<TrafficQuota>>,
}

/// What the lease keeper did in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseSweep {
    pub stopped: Vec<ServerId>,
    pub deleted: Vec<ServerId>,
}

fn describe(b: &Bandwidth) -> String {
    let one = |r: Option<nubis_api::bandwidth::RateLimit>| match r {
        None => "unlimited".to_owned(),
        Some(r) => format!("{} Mbit/s", r.average_mbit),
    };
    format!("inbound {}, outbound {}", one(b.inbound), one(b.outbound))
}

impl Store {
    /// Changes bandwidth and/or traffic quota of a (not deleting) server and
    /// re-checks the quota at once, so raising it lifts a throttle or a
    /// suspension immediately.
    pub async fn update_terms(
        &self,
        server: ServerId,
        update: &TermsUpdate,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<StateChange>> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT id FROM servers WHERE id = $1 AND deleting = 0")
            .bind(server.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        if let Some(b) = &update.bandwidth {
            sqlx::query("UPDATE servers SET bandwidth = $2 WHERE id = $1")
                .bind(server.to_string())
                .bind((!b.is_unlimited()).then(|| to_json(b)))
                .execute(&mut *tx)
                .await?;
            let message = format!("bandwidth set to {}", describe(b));
            events::record(&mut tx, server, now, EventKind::BandwidthChanged, &message).await?;
        }
        if let Some(q) = &update.traffic_quota {
            sqlx::query(
                "UPDATE servers SET traffic_quota_bytes = $2, traffic_policy = $3 WHERE id = $1",
            )
            .bind(server.to_string())
            .bind(q.map(|q| big(q.bytes())))
            .bind(q.map(|q| q.policy.as_str()))
            .execute(&mut *tx)
            .await?;
            let message = match q {
                Some(q) => format!(
                    "monthly traffic quota set to {} GiB ({})",
                    q.gib(),
                    q.policy.as_str()
                ),
                None => "monthly traffic quota removed".to_owned(),
            };
            events::record(&mut tx, server, now, EventKind::QuotaChanged, &message).await?;
        }
        let change = enforce_quota(&mut tx, server, now).await?;
        tx.commit().await?;
        Ok(change)
    }

    /// Sets a new lease expiry (a renewal): an expired lease becomes active
    /// again; the server stays stopped until started.
    pub async fn renew_lease(
        &self,
        server: ServerId,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE servers SET lease_expires_at = $2, lease_expired = 0 \
             WHERE id = $1 AND deleting = 0",
        )
        .bind(server.to_string())
        .bind(expires_at.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let message = format!("lease renewed until {}", expires_at.to_rfc3339());
        events::record(&mut tx, server, now, EventKind::LeaseRenewed, &message).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Exempts a server from lease enforcement, or lifts the exemption.
    pub async fn set_lease_exempt(
        &self,
        server: ServerId,
        exempt: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE servers SET lease_exempt = $2, \
             lease_expired = CASE WHEN $2 = 1 THEN 0 ELSE lease_expired END \
             WHERE id = $1 AND deleting = 0",
        )
        .bind(server.to_string())
        .bind(i64::from(exempt))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let message = if exempt {
            "exempted from its lease by an administrator"
        } else {
            "lease exemption lifted by an administrator"
        };
        events::record(&mut tx, server, now, EventKind::LeaseExempted, message).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Enforces leases at `now`: servers whose lease ran out are stopped
    /// (once); those expired for longer than `grace` are marked for deletion.
    pub async fn sweep_leases(
        &self,
        now: DateTime<Utc>,
        grace: chrono::Duration,
    ) -> StoreResult<LeaseSweep> {
        let now_ms = now.timestamp_millis();
        let mut sweep = LeaseSweep::default();
        let mut tx = self.begin_write().await?;
        let due = sqlx::query(
            "SELECT id, lease_expires_at FROM servers WHERE lease_expires_at IS NOT NULL \
             AND lease_expires_at <= $1 AND lease_exempt = 0 AND deleting = 0",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        for row in due {
            let id: ServerId = parse(&row, "id")?;
            let expires: i64 = sqlx::Row::try_get(&row, "lease_expires_at")?;
            let delete_at = expires.saturating_add(grace.num_milliseconds());
            if delete_at <= now_ms {
                // Guarded like the stop below: of two sweeps at once (two
                // controllers), only the one that flips `deleting` records it.
                let claimed = sqlx::query(
                    "UPDATE servers SET lease_expired = 1, deleting = 1 \
                     WHERE id = $1 AND deleting = 0",
                )
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                if claimed.rows_affected() == 0 {
                    continue;
                }
                events::record(
                    &mut tx,
                    id,
                    now,
                    EventKind::LeaseDeleted,
                    "lease expired and its grace period ended: server deleted",
                )
                .await?;
                super::servers::mark_deleting_in(&mut tx, id, now_ms).await?;
                sweep.deleted.push(id);
            } else {
                let stopped = sqlx::query(
                    "UPDATE servers SET power = 'stopped', lease_expired = 1 \
                     WHERE id = $1 AND lease_expired = 0",
                )
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                if stopped.rows_affected() > 0 {
                    usage::server_stopped(&mut tx, &id.to_string(), now_ms).await?;
                    let message = format!(
                        "lease expired: server stopped; it will be deleted at {} unless renewed",
                        DateTime::from_timestamp_millis(delete_at)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    );
                    events::record(&mut tx, id, now, EventKind::LeaseExpired, &message).await?;
                    sweep.stopped.push(id);
                }
            }
        }
        tx.commit().await?;
        Ok(sweep)
    }
}
