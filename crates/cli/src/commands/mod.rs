//! The client subcommands.

pub mod auth;
pub mod flavors;
pub mod images;
pub mod keypairs;
pub mod networks;
pub mod nics;
pub mod quotas;
pub mod servers;
pub mod ssh;
pub mod terms;
pub mod usage;
