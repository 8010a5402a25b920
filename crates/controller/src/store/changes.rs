//! Telling the other controllers on one PostgreSQL database that desired
//! state changed, so they wake the agents long-polling them at once instead
//! of at the poll's timeout: `NOTIFY` on a channel every controller `LISTEN`s
//! on. SQLite has one controller, so there is nothing to tell.

use super::{Backend, Store, StoreResult};

/// The PostgreSQL notification channel for changes of desired state.
pub const CHANNEL: &str = "nubis_desired_state";

impl Store {
    /// Announces a change of desired state to every other controller
    /// listening. Call after the change is committed.
    pub async fn announce_change(&self) -> StoreResult<()> {
        if self.backend() == Backend::Postgres {
            // The simple-query protocol: NOTIFY takes no bind parameters.
            // The payload (hex) names this store, so it can ignore its own.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "NOTIFY {CHANNEL}, '{}'",
                self.instance
            )))
            .execute(self.writer())
            .await?;
        }
        Ok(())
    }

    /// A connection listening for announced changes; `None` on SQLite.
    pub async fn change_listener(&self) -> StoreResult<Option<sqlx::postgres::PgListener>> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(listener))
    }

    /// Whether a notification's payload came from this store (this controller).
    pub fn is_own_announcement(&self, payload: &str) -> bool {
        payload == &*self.instance
    }
}
