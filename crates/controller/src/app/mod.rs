//! Domain operations that span several stores and rules (the HTTP handlers
//! and the portal call these).

pub mod evacuator;
pub mod moves;
