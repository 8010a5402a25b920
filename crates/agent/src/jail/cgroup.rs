//! Each QEMU in a cgroup leaf of its own, limited from its flavor.
//!
//! Hosts differ: a pure cgroup v2 host has every controller in one
//! hierarchy (`memory.max`, `pids.max`, `cpu.max`); a hybrid host (Debian's
//! older systemd setups, this project's CI) mounts v1 hierarchies per
//! controller under `/sys/fs/cgroup/<controller>` and a v2 one, often
//! without controllers, at `/sys/fs/cgroup/unified`. So each controller is
//! placed where it is actually enabled: v2 when the v2 root lists it in
//! `cgroup.controllers`, else its v1 hierarchy (`memory.limit_in_bytes`,
//! `pids.max`, `cpu.cfs_quota_us`).
//!
//! Leaves live under `nubis/` below the agent's own cgroup in each
//! hierarchy (like a delegated systemd service), never at a hierarchy's top,
//! so the QEMUs stay inside whatever limits the agent itself runs under.

use std::path::{Path, PathBuf};

/// The directory below the agent's own cgroup that holds the leaves.
const PARENT: &str = "nubis";
/// The CFS period for the CPU quota (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;
/// QEMU's own memory beside guest RAM: its code, device emulation, I/O
/// buffers, the VNC server. Generous, because going over kills the guest.
pub const MEMORY_OVERHEAD_MIB: u64 = 256;
/// Under TCG, the translation-block cache QEMU allocates as it translates
/// guest code (bounded by `-accel tcg,tb-size=` on the command line).
pub const TCG_CACHE_MIB: u64 = 256;
/// Threads QEMU needs beside one per vCPU: main loop, RCU, I/O worker pool
/// (up to 64), VNC worker, call_rcu and a margin. QEMU cannot fork (the
/// sandbox denies it), so this only bounds threads.
pub const PIDS_BASE: u64 = 128;
/// CPU time for QEMU's emulator and I/O threads beside the vCPUs, in
/// hundredths of a CPU.
pub const CPU_EXTRA_PERCENT: u64 = 25;

/// A controller Nubis limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    const ALL: [Controller; 3] = [Self::Memory, Self::Pids, Self::Cpu];

    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Pids => "pids",
            Self::Cpu => "cpu",
        }
    }
}

/// The limits of one QEMU, derived from its flavor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids: u64,
    /// CPU time per [`CPU_PERIOD_US`], in microseconds.
    pub cpu_quota_us: u64,
    pub cpu_period_us: u64,
}

impl Limits {
    /// Guest RAM plus [`MEMORY_OVERHEAD_MIB`] (and [`TCG_CACHE_MIB`] under
    /// TCG); [`PIDS_BASE`] plus one thread per vCPU; one CPU per vCPU plus
    /// [`CPU_EXTRA_PERCENT`].
    pub fn for_flavor(vcpus: u64, memory_mib: u64, tcg: bool) -> Self {
        let overhead = MEMORY_OVERHEAD_MIB + if tcg { TCG_CACHE_MIB } else { 0 };
        Self {
            memory_bytes: (memory_mib + overhead) << 20,
            pids: PIDS_BASE + vcpus,
            cpu_quota_us: (vcpus * 100 + CPU_EXTRA_PERCENT) * CPU_PERIOD_US / 100,
            cpu_period_us: CPU_PERIOD_US,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Where one controller's leaves go.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placement {
    controller: Controller,
    version: Version,
    /// `<hierarchy>/<agent's cgroup>/nubis`.
    parent: PathBuf,
}

/// Where this host's QEMUs get their cgroups (probed once per agent).
#[derive(Clone, Debug, Default)]
pub struct Cgroups {
    placements: Vec<Placement>,
}

/// Why cgroups could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The cgroup of this process in each hierarchy, from `/proc/self/cgroup`
/// (`ID:controllers:path`; v2 has ID 0 and no controllers).
fn own_paths(proc_self_cgroup: &str) -> Vec<(String, String)> {
    proc_self_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

fn join_cgroup(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/')).join(PARENT)
}

impl Cgroups {
    /// Probes the host's cgroup file systems under `sysfs` (normally
    /// `/sys/fs/cgroup`), given this process's `/proc/self/cgroup`. A
    /// controller found nowhere is left out (with a warning): the host
    /// cannot limit it.
    pub fn probe(sysfs: &Path, proc_self_cgroup: &str) -> Self {
        let own = own_paths(proc_self_cgroup);
        let v2_root = [sysfs.to_owned(), sysfs.join("unified")]
            .into_iter()
            .find(|p| p.join("cgroup.controllers").is_file());
        let v2_controllers = v2_root
            .as_ref()
            .and_then(|r| std::fs::read_to_string(r.join("cgroup.controllers")).ok())
            .unwrap_or_default();
        let v2_own = own
            .iter()
            .find(|(c, _)| c.is_empty())
            .map(|(_, p)| p.as_str())
            .unwrap_or("/");
        let mut placements = Vec::new();
        for controller in Controller::ALL {
            let name = controller.name();
            if let Some(root) = v2_root
                .as_ref()
                .filter(|_| v2_controllers.split_whitespace().any(|c| c == name))
            {
                placements.push(Placement {
                    controller,
                    version: Version::V2,
                    parent: join_cgroup(root, v2_own),
                });
                continue;
            }
            let v1_root = sysfs.join(name);
            let v1_own = own
                .iter()
                .find(|(cs, _)| cs.split(',').any(|c| c == name))
                .map(|(_, p)| p.as_str());
            match v1_own {
                Some(path) if v1_root.is_dir() => placements.push(Placement {
                    controller,
                    version: Version::V1,
                    parent: join_cgroup(&v1_root, path),
                }),
                _ => tracing::warn!(
                    controller = name,
                    "no cgroup hierarchy has this controller; QEMU runs without its limit"
                ),
            }
        }
        Self { placements }
    }

    /// The host's real cgroups.
    pub fn probe_host() -> Self {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let cgroups = Self::probe(Path::new("/sys/fs/cgroup"), &own);
        tracing::info!(placements = ?cgroups.placements, "QEMU cgroups");
        cgroups
    }

    /// The leaf of instance `name` (one directory per hierarchy involved).
    pub fn leaf(&self, name: &str) -> Leaf {
        Leaf {
            dirs: self
                .placements
                .iter()
                .map(|p| (p.controller, p.version, p.parent.join(name)))
                .collect(),
        }
    }

    /// Makes the `nubis` parents and, on v2, enables the controllers for
    /// their children. v2 lets a cgroup that holds processes (the agent's,
    /// unless it is the root) hand controllers down only once those
    /// processes sit in a leaf: the agent then moves itself into `agent/`
    /// beside `nubis/`, as systemd asks of a delegated service.
    pub fn prepare(&self) -> Result<(), CgroupError> {
        let mut v2_parents: Vec<(&Path, Vec<&str>)> = Vec::new();
        for p in &self.placements {
            std::fs::create_dir_all(&p.parent).map_err(io(&p.parent))?;
            if p.version == Version::V2 {
                match v2_parents.iter_mut().find(|(d, _)| *d == p.parent) {
                    Some((_, names)) => names.push(p.controller.name()),
                    None => v2_parents.push((&p.parent, vec![p.controller.name()])),
                }
            }
        }
        for (parent, names) in v2_parents {
            let own = parent.parent().expect("nubis has a parent");
            let enable: Vec<String> = names.iter().map(|n| format!("+{n}")).collect();
            let enable = enable.join(" ");
            let own_control = own.join("cgroup.subtree_control");
            if std::fs::write(&own_control, &enable).is_err() {
                // Busy: the agent's cgroup holds processes (see above).
                let leaf = own.join("agent");
                std::fs::create_dir_all(&leaf).map_err(io(&leaf))?;
                let procs = leaf.join("cgroup.procs");
                std::fs::write(&procs, std::process::id().to_string()).map_err(io(&procs))?;
                std::fs::write(&own_control, &enable).map_err(io(&own_control))?;
            }
            let control = parent.join("cgroup.subtree_control");
            std::fs::write(&control, &enable).map_err(io(&control))?;
        }
        Ok(())
    }
}

/// One instance's cgroup directories, one per hierarchy involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    dirs: Vec<(Controller, Version, PathBuf)>,
}

impl Leaf {
    /// Creates the leaf (if needed) and writes `limits` into it.
    pub fn create(&self, limits: &Limits) -> Result<(), CgroupError> {
        for (controller, version, dir) in &self.dirs {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let files: Vec<(&str, String)> = match (controller, version) {
                (Controller::Memory, Version::V2) => {
                    vec![("memory.max", limits.memory_bytes.to_string())]
                }
                (Controller::Memory, Version::V1) => {
                    vec![("memory.limit_in_bytes", limits.memory_bytes.to_string())]
                }
                (Controller::Pids, _) => vec![("pids.max", limits.pids.to_string())],
                (Controller::Cpu, Version::V2) => vec![(
                    "cpu.max",
                    format!("{} {}", limits.cpu_quota_us, limits.cpu_period_us),
                )],
                (Controller::Cpu, Version::V1) => vec![
                    ("cpu.cfs_period_us", limits.cpu_period_us.to_string()),
                    ("cpu.cfs_quota_us", limits.cpu_quota_us.to_string()),
                ],
            };
            for (file, value) in files {
                let path = dir.join(file);
                std::fs::write(&path, value).map_err(io(&path))?;
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes itself into to enter the
    /// leaf (one per distinct directory).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = Vec::new();
        for (_, _, dir) in &self.dirs {
            let file = dir.join("cgroup.procs");
            if !files.contains(&file) {
                files.push(file);
            }
        }
        files
    }

    /// The leaf's directories.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, _, dir) in &self.dirs {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        dirs
    }

    /// A leaf from directories recorded earlier (see [`Leaf::dirs`]); only
    /// removal needs nothing more.
    pub fn from_dirs(dirs: &[PathBuf]) -> Self {
        Self {
            dirs: dirs
                .iter()
                .map(|d| (Controller::Memory, Version::V2, d.clone()))
                .collect(),
        }
    }

    /// Removes the leaf's directories (they must hold no live process).
    /// A cgroup empties a moment after its last process exits, so a busy
    /// directory is tried again for a while.
    pub async fn remove(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Err(e) => return Err(io(&dir)(e)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_SELF: &str =
        "9:name=systemd:/\n8:pids:/svc\n4:memory:/svc\n2:cpu,cpuacct:/svc\n0::/svc\n";

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn limits_follow_the_flavor() {
        let l = Limits::for_flavor(2, 1024, true);
        assert_eq!(l.memory_bytes, (1024 + 256 + 256) << 20);
        assert_eq!(l.pids, 130);
        assert_eq!((l.cpu_quota_us, l.cpu_period_us), (225_000, 100_000));
        let kvm = Limits::for_flavor(1, 512, false);
        assert_eq!(kvm.memory_bytes, (512 + 256) << 20);
    }

    #[test]
    fn hybrid_host_uses_v1_for_controllers_v2_lacks() {
        let sysfs = tempfile::tempdir().unwrap();
        let root = sysfs.path();
        for d in ["memory/svc", "pids/svc", "cpu/svc", "unified/svc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // The v2 hierarchy of a hybrid host: only hugetlb.
        std::fs::write(root.join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        let cgroups = Cgroups::probe(root, HYBRID_SELF);
        cgroups.prepare().unwrap();
        let leaf = cgroups.leaf("i-1");
        leaf.create(&Limits::for_flavor(1, 256, true)).unwrap();
        assert_eq!(
            read(&root.join("memory/svc/nubis/i-1/memory.limit_in_bytes")),
            ((256u64 + 512) << 20).to_string()
        );
        assert_eq!(read(&root.join("pids/svc/nubis/i-1/pids.max")), "129");
        assert_eq!(
            read(&root.join("cpu/svc/nubis/i-1/cpu.cfs_quota_us")),
            "125000"
        );
        assert_eq!(
            read(&root.join("cpu/svc/nubis/i-1/cpu.cfs_period_us")),
            "100000"
        );
        assert_eq!(
            leaf.procs_files().len(),
            3,
            "one cgroup.procs per hierarchy"
        );
        assert!(
            !root.join("unified/svc/nubis/i-1").exists(),
            "v2 has no controller here"
        );
        // Removal takes the directories (a real cgroupfs rmdir drops the
        // control files with them; here they are ordinary files).
        for dir in leaf.dirs() {
            for f in std::fs::read_dir(&dir).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
        futures_util::FutureExt::now_or_never(leaf.remove())
            .unwrap()
            .unwrap();
        assert!(leaf.dirs().iter().all(|d| !d.exists()));
    }

    #[test]
    fn pure_v2_host_uses_one_leaf_for_all_controllers() {
        let sysfs = tempfile::tempdir().unwrap();
        let root = sysfs.path();
        std::fs::create_dir_all(root.join("svc")).unwrap();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let cgroups = Cgroups::probe(root, "0::/svc\n");
        cgroups.prepare().unwrap();
        assert_eq!(
            read(&root.join("svc/nubis/cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        let leaf = cgroups.leaf("i-2");
        leaf.create(&Limits::for_flavor(2, 512, false)).unwrap();
        let dir = root.join("svc/nubis/i-2");
        assert_eq!(
            read(&dir.join("memory.max")),
            ((512u64 + 256) << 20).to_string()
        );
        assert_eq!(read(&dir.join("pids.max")), "130");
        assert_eq!(read(&dir.join("cpu.max")), "225000 100000");
        assert_eq!(leaf.procs_files(), vec![dir.join("cgroup.procs")]);
        assert_eq!(leaf.dirs(), vec![dir]);
    }

    #[test]
    fn a_missing_controller_is_left_out() {
        let sysfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sysfs.path().join("memory")).unwrap();
        let cgroups = Cgroups::probe(sysfs.path(), "4:memory:/\n");
        assert_eq!(
            cgroups.leaf("x").dirs(),
            vec![sysfs.path().join("memory/nubis/x")]
        );
    }
}
