//! A network namespace that a test creates, enters and removes.

use nix::sched::{setns, CloneFlags};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A named network namespace (`ip netns`) with loopback up; removed on drop.
pub struct NetNs {
    pub name: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("running ip");
    assert!(status.success(), "ip {args:?} failed");
}

impl NetNs {
    /// Creates a fresh namespace named after the test, loopback up.
    pub fn new(test: &str) -> Self {
        let ns = Self::with_loopback_down(test);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Creates a fresh namespace as `ip netns add` leaves it: loopback down.
    pub fn with_loopback_down(test: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "nubis-{}-{}-{}",
            test,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        Self { name }
    }

    /// Moves the calling thread into the namespace. Threads and processes it
    /// creates afterwards (the tokio runtime, `nubis up`) live there too.
    pub fn enter_current_thread(&self) {
        let file = std::fs::File::open(format!("/var/run/netns/{}", self.name))
            .expect("opening the namespace");
        setns(file, CloneFlags::CLONE_NEWNET).expect("setns");
    }
}

/// Links the calling thread's namespace to the namespace `outside` by a
/// veth pair: `host_if` with `host_cidr` here, `out_if` with `out_cidr`
/// there, both up. The outside namespace stands for the world beyond the
/// host's uplink (guests reach it through the host's forwarding and NAT).
pub fn link_outside(outside: &str, host_if: &str, host_cidr: &str, out_if: &str, out_cidr: &str) {
    ip(&[
        "link", "add", host_if, "type", "veth", "peer", "name", out_if, "netns", outside,
    ]);
    ip(&["addr", "add", host_cidr, "dev", host_if]);
    ip(&["link", "set", host_if, "up"]);
    ip(&["-n", outside, "addr", "add", out_cidr, "dev", out_if]);
    ip(&["-n", outside, "link", "set", out_if, "up"]);
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Runs `body` on a new thread inside a fresh namespace with its own tokio
/// runtime, then removes the namespace (also when the body panics).
pub fn run_in_netns<F, Fut>(test: &str, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    run_in(NetNs::new(test), body)
}

/// Runs `body` inside `ns` on a new thread with its own tokio runtime, then
/// removes the namespace (also when the body panics).
pub fn run_in<F, Fut>(ns: NetNs, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let name = ns.name.clone();
    let result = std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/var/run/netns/{name}")).expect("netns");
        setns(file, CloneFlags::CLONE_NEWNET).expect("setns");
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body());
    })
    .join();
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
