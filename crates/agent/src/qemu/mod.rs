//! Driving QEMU directly: its command line, its QMP socket, its process.

pub mod cmdline;
pub mod migration;
pub mod process;
pub mod qmp;

pub use cmdline::{Accel, VmConfig};
pub use process::QemuProcess;
pub use qmp::{QmpClient, QmpError, QmpEvent};

/// The QEMU binary for x86-64 guests.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
