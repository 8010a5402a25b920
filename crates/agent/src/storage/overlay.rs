//! Instance disks: a qcow2 overlay on the cached base image, so creating a
//! disk takes the same time whatever the image's size.

use anyhow::{bail, Context};
use std::path::Path;

use crate::qemu::cmdline::DiskDriver;

/// Creates `overlay` (qcow2, `size_gib`) backed by `base` of format `base_format`.
/// Formats are passed explicitly; the file appears only when complete.
pub async fn create(
    overlay: &Path,
    base: &Path,
    base_format: DiskDriver,
    size_gib: u64,
) -> anyhow::Result<()> {
    let temp = overlay.with_extension("qcow2.creating");
    let output = tokio::process::Command::new("qemu-img")
        .arg("create")
        .args(["-q", "-f", "qcow2", "-F", base_format.as_str(), "-b"])
        .arg(base)
        .arg(&temp)
        .arg(format!("{size_gib}G"))
        .output()
        .await
        .context("running qemu-img (is qemu-utils installed?)")?;
    if !output.status.success() {
        let _ = tokio::fs::remove_file(&temp).await;
        bail!(
            "qemu-img create failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    tokio::fs::rename(&temp, overlay).await?;
    Ok(())
}
