//! Changes made at other controllers on the same PostgreSQL database: this
//! task `LISTEN`s for their announcements (see `store/changes.rs`) and wakes
//! this controller's long-polling agents, so an agent connected here follows
//! a change made there at once rather than at its poll's timeout.

use crate::http::AppState;
use std::time::Duration;

/// How long to wait before listening again after the connection failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Follows other controllers' changes, forever (PostgreSQL only; returns at
/// once on SQLite, where there is one controller).
pub async fn follow(state: AppState) {
    loop {
        let mut listener = match state.store.change_listener().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other controllers' changes; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        // A change may have been missed while not listening.
        state.wake_long_polls();
        loop {
            match listener.try_recv().await {
                Ok(Some(note)) => {
                    if !state.store.is_own_announcement(note.payload()) {
                        state.wake_long_polls();
                    }
                }
                // The connection was lost (and is re-established by the
                // next call): anything announced meanwhile is missed.
                Ok(None) => state.wake_long_polls(),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the change listener; listening again");
                    tokio::time::sleep(RETRY_AFTER).await;
                    break;
                }
            }
        }
    }
}
