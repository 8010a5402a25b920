//! Building the QEMU command line for an instance.
//!
//! Every disk format is stated explicitly (`-blockdev` JSON with the driver,
//! backing node included), so QEMU never probes a format from guest-writable
//! bytes. `-nodefaults -no-user-config` keep the machine exactly what we list.

use serde_json::json;
use std::ffi::OsString;
use std::path::PathBuf;

/// How QEMU executes guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// The format of a disk file, always given to QEMU explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskDriver {
    Qcow2,
    Raw,
}

impl DiskDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
        }
    }
}

/// Everything that shapes one instance's QEMU process.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The instance id, also used as QEMU's `-uuid` so a process can be
    /// recognised as ours after an agent restart.
    pub uuid: String,
    pub name: String,
    pub accel: Accel,
    pub vcpus: u64,
    pub memory_mib: u64,
    /// The instance's qcow2 overlay.
    pub disk: PathBuf,
    /// The base image under the overlay, and its format; `None` for a
    /// disk without backing file (a server installed from an ISO).
    pub backing: Option<(PathBuf, DiskDriver)>,
    /// An ISO in an IDE CD-ROM drive (read-only, raw), booted before the disk.
    pub cdrom: Option<PathBuf>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub qmp_socket: PathBuf,
    /// The serial console: a unix socket QEMU listens on (in the instance
    /// directory, so an unprivileged QEMU can create it); the agent reads
    /// it into a bounded log (`serial_log`). Output while nobody reads is
    /// dropped, so nothing grows while the agent is down.
    pub serial_socket: PathBuf,
    /// The VNC server's unix socket (the graphical console). Only the agent
    /// can reach it: no TCP port, so no password and no port reuse.
    pub vnc_socket: PathBuf,
    /// NICs: (TAP device name, MAC address), in guest order.
    pub nics: Vec<(String, String)>,
    /// A read-only raw disk with the guest's configuration (`config-2`).
    pub config_drive: Option<PathBuf>,
    /// Start with the CPUs stopped (`-S`): the guest runs only after `cont`.
    pub paused: bool,
    /// Descriptors of the NICs' TAPs, in `nics` order, opened by the agent
    /// (`-netdev tap,fd=`); empty: QEMU opens them by name.
    pub tap_fds: Vec<i32>,
    /// Descriptors QEMU gets as fd sets (`-add-fd fd=N,set=S`), opened
    /// by the agent; paths then name `/dev/fdset/S` (see [`fdset_path`]).
    pub fd_sets: Vec<(i32, u32)>,
    /// The target of a live migration: wait for the guest's state
    /// (`-incoming defer`, then `migrate-incoming` over QMP) instead of
    /// booting it (see [`super::migration`]).
    pub incoming: bool,
}

/// The path by which QEMU opens fd set `set` (see `VmConfig::fd_sets`).
pub fn fdset_path(set: u32) -> PathBuf {
    PathBuf::from(format!("/dev/fdset/{set}"))
}

/// Doubles commas, QEMU's escape inside `key=value,...` option strings.
fn escape_opt(s: &str) -> String {
    s.replace(',', ",,")
}

fn path_str(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

impl VmConfig {
    /// The argument vector (without the binary), for `Command::args`.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&[
            "-name",
            &format!("guest={},debug-threads=on", escape_opt(&self.name)),
        ]);
        push(&["-uuid", &self.uuid]);
        push(&["-nodefaults", "-no-user-config"]);
        if self.paused {
            push(&["-S"]);
        }
        match self.accel {
            Accel::Kvm => push(&["-machine", "pc", "-accel", "kvm", "-cpu", "host"]),
            // The translation cache bounded (QEMU's default is 1 GiB), so
            // QEMU fits its cgroup's memory limit (see `jail::cgroup`).
            Accel::Tcg => push(&["-machine", "pc", "-accel", "tcg,tb-size=256"]),
        }
        push(&["-smp", &self.vcpus.to_string()]);
        push(&["-m", &format!("{}M", self.memory_mib)]);
        // Deny what a guest-driven QEMU never needs. The agent starts it
        // already detached and unprivileged (see `jail`), so no -daemonize,
        // whose setsid() and fork these would forbid.
        push(&[
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        ]);
        for (fd, set) in &self.fd_sets {
            push(&["-add-fd", &format!("fd={fd},set={set}")]);
        }
        push(&["-display", "none"]);
        // A screen, served on a unix socket only (see `vnc_socket`).
        push(&["-device", "VGA"]);
        push(&[
            "-vnc",
            &format!("unix:{}", escape_opt(&path_str(&self.vnc_socket))),
        ]);
        push(&[
            "-qmp",
            &format!(
                "unix:{},server=on,wait=off",
                escape_opt(&path_str(&self.qmp_socket))
            ),
        ]);
        push(&[
            "-chardev",
            &format!(
                "socket,id=console0,path={},server=on,wait=off",
                escape_opt(&path_str(&self.serial_socket))
            ),
        ]);
        push(&["-serial", "chardev:console0"]);
        let backing = match &self.backing {
            Some((path, driver)) => json!({
                "node-name": "base0",
                "driver": driver.as_str(),
                "read-only": true,
                "file": {"driver": "file", "filename": path_str(path), "read-only": true},
            }),
            // No backing file; and QEMU must not look for one.
            None => serde_json::Value::Null,
        };
        let blockdev = json!({
            "node-name": "disk0",
            "driver": "qcow2",
            "discard": "unmap",
            "file": {"driver": "file", "filename": path_str(&self.disk)},
            "backing": backing,
        });
        push(&["-blockdev", &blockdev.to_string()]);
        push(&["-device", "virtio-blk-pci,drive=disk0,bootindex=1"]);
        if let Some(iso) = &self.cdrom {
            // On the PIIX IDE controller every `pc` machine has; boots first.
            let blockdev = json!({
                "node-name": "cdrom0",
                "driver": "raw",
                "read-only": true,
                "file": {"driver": "file", "filename": path_str(iso), "read-only": true},
            });
            push(&["-blockdev", &blockdev.to_string()]);
            push(&[
                "-device",
                "ide-cd,id=cdrom0,drive=cdrom0,bus=ide.1,bootindex=0",
            ]);
        }
        if let Some(drive) = &self.config_drive {
            let blockdev = json!({
                "node-name": "config0",
                "driver": "raw",
                "read-only": true,
                "file": {"driver": "file", "filename": path_str(drive), "read-only": true},
            });
            push(&["-blockdev", &blockdev.to_string()]);
            push(&["-device", "virtio-blk-pci,drive=config0"]);
        }
        for (i, (tap, mac)) in self.nics.iter().enumerate() {
            let netdev = match self.tap_fds.get(i) {
                Some(fd) => format!("tap,id=net{i},fd={fd}"),
                None => format!(
                    "tap,id=net{i},ifname={},script=no,downscript=no",
                    escape_opt(tap)
                ),
            };
            push(&["-netdev", &netdev]);
            push(&[
                "-device",
                &format!("virtio-net-pci,netdev=net{i},mac={}", escape_opt(mac)),
            ]);
        }
        if self.incoming {
            push(&["-incoming", "defer"]);
        }
        if let Some(kernel) = &self.kernel {
            push(&["-kernel", &path_str(kernel)]);
            if let Some(initrd) = &self.initrd {
                push(&["-initrd", &path_str(initrd)]);
            }
            if let Some(cmdline) = &self.cmdline {
                push(&["-append", cmdline]);
            }
        }
        a.into_iter().map(OsString::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            uuid: "0b7f9f51-5a4e-4b8e-9a51-3f0c2d6f4e11".into(),
            name: "web,1".into(),
            accel: Accel::Tcg,
            vcpus: 2,
            memory_mib: 256,
            disk: "/var/lib/nubis/instances/x/disk.qcow2".into(),
            backing: Some(("/var/lib/nubis/images/i.qcow2".into(), DiskDriver::Qcow2)),
            cdrom: None,
            kernel: Some("/k".into()),
            initrd: Some("/i".into()),
            cmdline: Some("console=ttyS0 quiet".into()),
            qmp_socket: "/run/x/qmp.sock".into(),
            serial_socket: "/run/x/serial.sock".into(),
            vnc_socket: "/run/x/vnc.sock".into(),
            nics: vec![("ntap-1".into(), "52:54:00:00:00:01".into())],
            config_drive: Some("/run/x/config.img".into()),
            paused: true,
            tap_fds: vec![],
            fd_sets: vec![],
            incoming: false,
        }
    }

    fn args(c: &VmConfig) -> Vec<String> {
        c.args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing"));
        &args[i + 1]
    }

    #[test]
    fn formats_are_explicit_and_defaults_off() {
        let a = args(&config());
        assert!(a.contains(&"-nodefaults".to_string()));
        assert!(a.contains(&"-no-user-config".to_string()));
        assert!(a.contains(&"-S".to_string()), "starts paused");
        let blockdev: serde_json::Value = serde_json::from_str(after(&a, "-blockdev")).unwrap();
        assert_eq!(blockdev["driver"], "qcow2");
        assert_eq!(blockdev["file"]["driver"], "file");
        assert_eq!(blockdev["backing"]["driver"], "qcow2");
        assert_eq!(blockdev["backing"]["read-only"], true);
        assert!(
            !a.iter().any(|x| x == "-drive" || x == "-hda"),
            "no probing drive options"
        );
    }

    #[test]
    fn sizes_accel_and_boot() {
        let a = args(&config());
        assert_eq!(after(&a, "-smp"), "2");
        assert_eq!(after(&a, "-m"), "256M");
        assert_eq!(after(&a, "-accel"), "tcg,tb-size=256");
        assert_eq!(after(&a, "-append"), "console=ttyS0 quiet");
        assert_eq!(after(&a, "-uuid"), "0b7f9f51-5a4e-4b8e-9a51-3f0c2d6f4e11");
        let mut kvm = config();
        kvm.accel = Accel::Kvm;
        let a = args(&kvm);
        assert_eq!(after(&a, "-accel"), "kvm");
        assert_eq!(after(&a, "-cpu"), "host");
    }

    #[test]
    fn nics_and_config_drive() {
        let a = args(&config());
        assert_eq!(
            after(&a, "-netdev"),
            "tap,id=net0,ifname=ntap-1,script=no,downscript=no"
        );
        assert!(a.contains(&"virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01".to_string()));
        let drives: Vec<serde_json::Value> = a
            .iter()
            .zip(a.iter().skip(1))
            .filter(|(f, _)| *f == "-blockdev")
            .map(|(_, v)| serde_json::from_str(v).unwrap())
            .collect();
        assert_eq!(drives.len(), 2);
        assert_eq!(drives[1]["driver"], "raw");
        assert_eq!(drives[1]["read-only"], true);
    }

    #[test]
    fn vnc_only_on_a_unix_socket() {
        let a = args(&config());
        assert_eq!(after(&a, "-vnc"), "unix:/run/x/vnc.sock");
        assert_eq!(a.iter().filter(|x| *x == "-vnc").count(), 1);
        assert!(a.contains(&"VGA".to_string()), "a display device");
        let mut c = config();
        c.vnc_socket = "/data,dir/vnc.sock".into();
        assert_eq!(after(&args(&c), "-vnc"), "unix:/data,,dir/vnc.sock");
    }

    #[test]
    fn iso_boot_blank_disk_and_cdrom_first() {
        let mut c = config();
        c.backing = None;
        c.cdrom = Some("/var/lib/nubis/images/i.iso".into());
        c.kernel = None;
        let a = args(&c);
        let drives: Vec<serde_json::Value> = a
            .iter()
            .zip(a.iter().skip(1))
            .filter(|(f, _)| *f == "-blockdev")
            .map(|(_, v)| serde_json::from_str(v).unwrap())
            .collect();
        assert_eq!(drives[0]["driver"], "qcow2");
        assert_eq!(drives[0]["backing"], serde_json::Value::Null);
        let cd = drives.iter().find(|d| d["node-name"] == "cdrom0").unwrap();
        assert_eq!(cd["driver"], "raw");
        assert_eq!(cd["read-only"], true);
        assert_eq!(cd["file"]["filename"], "/var/lib/nubis/images/i.iso");
        assert!(a.contains(&"ide-cd,id=cdrom0,drive=cdrom0,bus=ide.1,bootindex=0".to_string()));
        assert!(a.contains(&"virtio-blk-pci,drive=disk0,bootindex=1".to_string()));
        assert!(!a.contains(&"-kernel".to_string()), "firmware boot");
    }

    #[test]
    fn jailed_qemu_gets_descriptors_and_the_full_sandbox() {
        let mut c = config();
        c.tap_fds = vec![7];
        c.fd_sets = vec![9, 10].into_iter().zip([1, 2]).collect();
        c.backing = Some((fdset_path(1), DiskDriver::Qcow2));
        let a = args(&c);
        assert_eq!(after(&a, "-netdev"), "tap,id=net0,fd=7");
        let sets: Vec<&String> = a
            .iter()
            .zip(a.iter().skip(1))
            .filter(|(f, _)| *f == "-add-fd")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(sets, ["fd=9,set=1", "fd=10,set=2"]);
        let blockdev: serde_json::Value = serde_json::from_str(after(&a, "-blockdev")).unwrap();
        assert_eq!(blockdev["backing"]["file"]["filename"], "/dev/fdset/1");
        assert_eq!(
            after(&a, "-sandbox"),
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
        );
        assert!(!a.iter().any(|x| x == "-daemonize" || x == "-pidfile"));
    }

    #[test]
    fn a_migration_target_waits_for_its_state() {
        assert!(!args(&config()).contains(&"-incoming".to_string()));
        let mut c = config();
        c.incoming = true;
        let a = args(&c);
        assert_eq!(after(&a, "-incoming"), "defer");
        assert!(a.contains(&"-S".to_string()), "stays paused after arriving");
    }

    #[test]
    fn commas_in_option_values_are_escaped() {
        let mut c = config();
        c.serial_socket = "/data,dir/serial.sock".into();
        let a = args(&c);
        assert_eq!(after(&a, "-name"), "guest=web,,1,debug-threads=on");
        assert_eq!(
            after(&a, "-chardev"),
            "socket,id=console0,path=/data,,dir/serial.sock,server=on,wait=off"
        );
    }
}
