//! **SIMULATED hosts** — for scale tests and benchmarks only.
//!
//! Nothing here runs a guest. A simulated host is a fake agent: it joins
//! the cluster with a join token, registers, long-polls its desired state
//! and reports every instance it is asked to run as `running` at once, with
//! no QEMU, disk, TAP, bridge, dnsmasq or nftables. The `nubis` binary never
//! uses this crate (it is not one of its dependencies), so a simulated host
//! can never be what a real deployment runs by mistake.
//!
//! # Why a fake agent rather than a `Hypervisor` seam inside the agent
//!
//! Omicron's sled-agent keeps its simulated sled in `sim/` beside the real
//! one. Nubis could do the same behind a `Hypervisor` trait in
//! `crates/agent` (start, QMP, stop), but one *agent* is heavy even with a
//! fake hypervisor: its own API listener and metadata listener, a data
//! directory with an image cache it downloads into, and host networking
//! (bridges, TAPs, dnsmasq, nftables) converged before instances. Running
//! ten thousand of those in one process would need fakes for all of that
//! too, and it would exercise none of what a scale test is about.
//!
//! What the controller sees of a host is the agent protocol and nothing
//! else, so a simulated host only needs to speak it, and it does so with
//! the agent's own pieces: the join (`nubis_pki::ca::new_host_key`, a CSR,
//! the CA fingerprint of the token checked), the real
//! [`nubis_agent::controller_client::ControllerClient`] over mutual TLS
//! with its own per-host certificate, the same long poll with `after`, and
//! full-snapshot reports. Only the hypervisor (see [`instances`]) is fake:
//! a few lines of bookkeeping per instance. One host is two small tokio
//! tasks and one TLS connection, so one process runs thousands.
//!
//! What a simulated host does **not** do: fetch images, build networks, run
//! a metadata service or answer the controller's calls to agents (console
//! logs, VNC): its registered URL is `https://<name>.sim.invalid:1`.

pub mod fleet;
pub mod host;
pub mod instances;

pub use fleet::{Fleet, FleetCounters};
pub use host::{SimHost, SimHostSpec, SimSettings};
