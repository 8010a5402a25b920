//! The Nubis controller: the REST API, authentication, the scheduler and the
//! state store. It holds desired state; agents converge hosts to it.

pub mod accounts;
pub mod address_space;
pub mod app;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod http;
pub mod live_migration;
pub mod login_throttle;
pub mod openstack;
pub mod peer_changes;
pub mod redact;
pub mod rental;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod terms_keeper;

pub use server::{ControllerConfig, RunningController};
