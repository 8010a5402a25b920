//! Supervision of the background tasks of a Nubis process (the controller's
//! HTTP server and terms keeper, the agent's API, reconcile and report loops
//! and metadata service).
//!
//! Every such task is meant to run forever. When one stops — an error, a
//! panic, or an unexpected return — the [`Supervisor`] logs it and starts it
//! again after a growing pause; a task that keeps failing past its budget
//! makes the supervisor give up with an error naming it, so the process can
//! exit non-zero (and systemd restart it) instead of living on half-alive.
//! The [`TaskBoard`] tells readiness checks which tasks run right now.

mod board;
mod listener;
mod supervisor;
mod task;

pub use board::{TaskBoard, TaskState, TaskStatus};
pub use listener::SharedListener;
pub use supervisor::{Policy, Supervisor};
pub use task::BackgroundTask;
