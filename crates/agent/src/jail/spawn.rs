//! Entering the jail between fork and exec.

use super::JAIL_DIR;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Everything a QEMU process is confined by, applied in the child after
/// `fork` and before `exec`, in this order: a new session (it outlives the
/// agent and its terminal), the cgroup leaf (entered while still root), a
/// private mount namespace with `vm_dir` bind-mounted (nosuid, nodev,
/// noexec) at [`JAIL_DIR`], the passed descriptors made inheritable, then
/// the supplementary groups, gid and uid.
#[derive(Clone, Debug)]
pub struct Confinement {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: none, or `kvm` under KVM.
    pub groups: Vec<u32>,
    pub vm_dir: PathBuf,
    /// The leaf's `cgroup.procs` files.
    pub cgroup_procs: Vec<PathBuf>,
    /// Descriptors QEMU inherits (TAPs, images).
    pub keep_fds: Vec<RawFd>,
}

fn c_path(p: &Path) -> std::io::Result<CString> {
    Ok(CString::new(p.as_os_str().as_bytes())?)
}

/// `Err(errno)` when a libc call returned a negative value.
fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Confinement {
    /// Makes `command` enter the jail before it execs.
    pub fn apply(&self, command: &mut tokio::process::Command) -> std::io::Result<()> {
        // Everything the child needs is allocated here, in the parent: only
        // async-signal-safe calls may run between fork and exec.
        let vm = c_path(&self.vm_dir)?;
        let jail = c_path(Path::new(JAIL_DIR))?;
        let root = CString::new("/").expect("no NUL");
        let procs = self
            .cgroup_procs
            .iter()
            .map(|p| c_path(p))
            .collect::<std::io::Result<Vec<_>>>()?;
        let groups: Vec<libc::gid_t> = self.groups.clone();
        let keep = self.keep_fds.clone();
        let (uid, gid) = (self.uid, self.gid);
        let enter = move || -> std::io::Result<()> {
            // SAFETY (whole block): plain system calls on values prepared
            // above; nothing allocates or takes a lock.
            unsafe {
                check(libc::setsid())?;
                for file in &procs {
                    let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    check(fd)?;
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if written != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                check(libc::unshare(libc::CLONE_NEWNS))?;
                // Nothing mounted here reaches the host's namespace.
                check(libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    vm.as_ptr(),
                    jail.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    std::ptr::null(),
                    jail.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_NOSUID
                        | libc::MS_NODEV
                        | libc::MS_NOEXEC,
                    std::ptr::null(),
                ))?;
                for fd in &keep {
                    let flags = libc::fcntl(*fd, libc::F_GETFD);
                    check(flags)?;
                    check(libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC))?;
                }
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
            Ok(())
        };
        // SAFETY: `enter` only makes async-signal-safe system calls.
        unsafe {
            command.pre_exec(enter);
        }
        Ok(())
    }
}
