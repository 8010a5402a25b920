//! What this host offers: CPUs, memory, disk.

use std::path::Path;

/// The host's capacity as reported to the controller.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// Reads the host's capacity; disk is the size of the filesystem holding `data_dir`.
pub fn capacity(data_dir: &Path) -> Capacity {
    let vcpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(1024);
    let disk_gib = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| s.blocks() * s.fragment_size() / (1024 * 1024 * 1024))
        .unwrap_or(10);
    Capacity {
        vcpus,
        memory_mib,
        disk_gib,
    }
}
