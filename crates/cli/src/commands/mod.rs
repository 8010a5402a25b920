//! The client subcommands.

pub mod auth;
pub mod flavors;
pub mod images;
pub mod servers;
