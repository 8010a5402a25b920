//! The graphical console of a server: a short-lived, single-use link.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The websocket subprotocol that carries a console token:
/// `nubis-console.<token>`, offered beside [`CONSOLE_WS_PROTOCOL`].
pub const CONSOLE_TOKEN_PROTOCOL_PREFIX: &str = "nubis-console.";

/// The subprotocol the console websocket answers with.
pub const CONSOLE_WS_PROTOCOL: &str = "binary";

/// Answer of `POST /v1/servers/{id}/console`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsoleAccess {
    /// The console page, `<public url>/console/<server id>#token=<token>`.
    /// Open it within `expires_at`; it works once. The token is in the
    /// fragment, so it never reaches server logs or `Referer` headers.
    pub url: String,
    /// The token alone (the same as in `url`), for clients that speak the
    /// websocket themselves: `GET /v1/console/websocket` offering the
    /// subprotocols `binary` and `nubis-console.<token>`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}
