//! File descriptors the agent opens for QEMU: TAP devices and base images,
//! which QEMU's uid could not open itself.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
/// Virtio-net headers on the TAP, as QEMU asks for when it opens one itself.
const IFF_VNET_HDR: libc::c_short = 0x4000;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Attaches to the persistent TAP `name` (made by the switch), as QEMU's
/// `-netdev tap,ifname=` would; QEMU gets the descriptor (`fd=`).
pub fn open_tap(name: &str) -> std::io::Result<OwnedFd> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other(format!("TAP name too long: {name}")));
    }
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads an ifreq, which `req` is laid out as.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OwnedFd::from(tun))
}

/// Opens an image read-only for QEMU (`-add-fd`).
pub fn open_image(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(OwnedFd::from(File::open(path)?))
}

/// The descriptors handed to one QEMU, kept open until it has started.
#[derive(Default)]
pub struct PassedFds {
    fds: Vec<OwnedFd>,
}

impl PassedFds {
    /// Keeps `fd` for the child; returns its number there (the same).
    pub fn pass(&mut self, fd: OwnedFd) -> RawFd {
        let raw = fd.as_raw_fd();
        self.fds.push(fd);
        raw
    }

    pub fn raw(&self) -> Vec<RawFd> {
        self.fds.iter().map(AsRawFd::as_raw_fd).collect()
    }
}
