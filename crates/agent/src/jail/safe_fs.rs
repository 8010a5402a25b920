//! Touching files in a directory a QEMU can write (`vm/`) as root without
//! being led elsewhere: no following links it may have planted there.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::JailRecord;

/// Makes the instance directory (root, 0700) and its `vm/` directory
/// (the instance's uid/gid, 0700).
pub fn make_dirs(dir: &Path, vm: &Path, record: &JailRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    match std::fs::create_dir(vm) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // `vm` is in root's directory: QEMU cannot have swapped it for a link.
    std::os::unix::fs::chown(vm, Some(record.uid), Some(record.gid))?;
    std::fs::set_permissions(vm, std::fs::Permissions::from_mode(0o700))
}

/// Gives `temp` (a file the agent wrote outside `vm/`) to the instance's
/// uid with `mode` and renames it to `dest` in `vm/`: rename replaces a
/// planted link instead of writing through it.
pub fn place(temp: &Path, dest: &Path, record: &JailRecord, mode: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(temp, Some(record.uid), Some(record.gid))?;
    std::fs::set_permissions(temp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(temp, dest)
}

/// Opens a regular file for reading without following a final symlink
/// (and without blocking on a planted FIFO).
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// A unix socket in `vm/`, opened as a path only: connect to
/// [`SocketPath::path`] while it lives. It must be a socket (not a link to
/// one elsewhere) owned by the owner of its directory (the instance).
pub struct SocketPath {
    _fd: OwnedFd,
    path: PathBuf,
}

impl SocketPath {
    pub fn open(socket: &Path) -> std::io::Result<Self> {
        let c = CString::new(socket.as_os_str().as_bytes())?;
        // SAFETY: a valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a live descriptor and a stat buffer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let dir_owner = socket
            .parent()
            .map(std::fs::symlink_metadata)
            .transpose()?
            .map(|m| m.uid());
        if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK || dir_owner != Some(stat.st_uid) {
            return Err(std::io::Error::other(format!(
                "{} is not the instance's own socket",
                socket.display()
            )));
        }
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(Self { _fd: fd, path })
    }

    /// A path that reaches exactly the socket opened.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Connects to a unix socket in `vm/` (see [`SocketPath`]).
pub async fn connect(socket: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let path = SocketPath::open(socket)?;
    tokio::net::UnixStream::connect(path.path()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn planted_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s").unwrap();
        let link = dir.path().join("console.log");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(open_regular(&link).is_err(), "a link is refused");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut open_regular(&secret).unwrap(), &mut text).unwrap();
        assert_eq!(text, "s");

        let real = dir.path().join("real.sock");
        let listener = tokio::net::UnixListener::bind(&real).unwrap();
        let sock_link = dir.path().join("qmp.sock");
        std::os::unix::fs::symlink(&real, &sock_link).unwrap();
        assert!(
            connect(&sock_link).await.is_err(),
            "a link to a socket is refused"
        );
        assert!(connect(&secret).await.is_err(), "a file is no socket");
        let accept = tokio::spawn(async move { listener.accept().await.map(drop) });
        connect(&real).await.expect("the socket itself");
        accept.await.unwrap().unwrap();
    }

    #[test]
    fn placing_replaces_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let dest = dir.path().join("config.img");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        let temp = dir.path().join("config.img.new");
        std::fs::write(&temp, "new").unwrap();
        let me = JailRecord {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            cgroups: vec![],
        };
        place(&temp, &dest, &me, 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&dest)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
