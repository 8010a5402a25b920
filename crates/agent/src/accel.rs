//! Choosing between KVM and TCG.

use crate::qemu::Accel;
use std::path::Path;

/// KVM when a hardware KVM module is loaded and `/dev/kvm` exists; otherwise
/// TCG. Only `kvm_intel`/`kvm_amd` count: other KVM flavours (such as PVM)
/// cannot run stock guest kernels.
pub fn detect() -> Accel {
    let hardware = ["/sys/module/kvm_intel", "/sys/module/kvm_amd"]
        .iter()
        .any(|m| Path::new(m).exists());
    if hardware && Path::new("/dev/kvm").exists() {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}
