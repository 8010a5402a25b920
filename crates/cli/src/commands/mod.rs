//! The client subcommands.

pub mod audit;
pub mod auth;
pub mod drain;
pub mod flavors;
pub mod floating_ips;
pub mod hosts;
pub mod images;
pub mod keypairs;
pub mod moves;
pub mod networks;
pub mod nics;
pub mod quotas;
pub mod security_groups;
pub mod server_groups;
pub mod server_view;
pub mod servers;
pub mod ssh;
pub mod terms;
pub mod usage;
pub mod wait;
