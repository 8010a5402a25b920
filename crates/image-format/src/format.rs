//! The declared formats Nubis accepts and the formats detection can find.

use std::fmt;
use std::str::FromStr;

/// A disk format a user may declare for an upload; the only ones Nubis accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    /// A plain disk image, byte for byte.
    Raw,
    /// QEMU copy-on-write v2/v3, self-contained.
    Qcow2,
    /// An ISO 9660 CD/DVD image, attached read-only.
    Iso,
}

impl DiskFormat {
    /// Every accepted format, for listings and error messages.
    pub const ALL: [DiskFormat; 3] = [DiskFormat::Raw, DiskFormat::Qcow2, DiskFormat::Iso];

    /// The lowercase name used in the API ("raw", "qcow2", "iso").
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Iso => "iso",
        }
    }

    /// The QEMU block driver to name explicitly (`-f`, `driver=`) so QEMU never
    /// probes: an ISO is read by the raw driver.
    pub fn qemu_format(self) -> &'static str {
        match self {
            DiskFormat::Raw | DiskFormat::Iso => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string given for a disk format is not one Nubis accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown disk format '{0}': use raw, qcow2 or iso")]
pub struct ParseDiskFormatError(pub String);

impl FromStr for DiskFormat {
    type Err = ParseDiskFormatError;

    /// Parses "raw", "qcow2" or "iso", ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DiskFormat::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseDiskFormatError(s.escape_debug().collect()))
    }
}

/// What an image's bytes really are, whatever the user declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DetectedFormat {
    /// No known signature: plain data.
    Raw,
    /// qcow2 magic (`QFI\xfb`, version other than 1).
    Qcow2,
    /// ISO 9660 (`CD001` in the first volume descriptors).
    Iso,
    /// VMDK sparse extent or text descriptor (which names host files).
    Vmdk,
    /// VirtualBox VDI.
    Vdi,
    /// Microsoft VHD (QEMU's "vpc"), dynamic or fixed.
    Vhd,
    /// Microsoft VHDX.
    Vhdx,
    /// QEMU enhanced disk.
    Qed,
    /// LUKS-encrypted volume.
    Luks,
    /// Another format QEMU could probe: "qcow", "parallels", "bochs", "cloop",
    /// "dmg".
    Other(&'static str),
}

impl DetectedFormat {
    /// The accepted format these bytes are, if any.
    pub fn disk_format(self) -> Option<DiskFormat> {
        match self {
            DetectedFormat::Raw => Some(DiskFormat::Raw),
            DetectedFormat::Qcow2 => Some(DiskFormat::Qcow2),
            DetectedFormat::Iso => Some(DiskFormat::Iso),
            _ => None,
        }
    }

    /// Lowercase name for messages ("vhd" rather than QEMU's "vpc").
    pub fn name(self) -> &'static str {
        match self {
            DetectedFormat::Raw => "raw",
            DetectedFormat::Qcow2 => "qcow2",
            DetectedFormat::Iso => "iso",
            DetectedFormat::Vmdk => "vmdk",
            DetectedFormat::Vdi => "vdi",
            DetectedFormat::Vhd => "vhd",
            DetectedFormat::Vhdx => "vhdx",
            DetectedFormat::Qed => "qed",
            DetectedFormat::Luks => "luks",
            DetectedFormat::Other(name) => name,
        }
    }
}

impl fmt::Display for DetectedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<DiskFormat> for DetectedFormat {
    fn from(f: DiskFormat) -> Self {
        match f {
            DiskFormat::Raw => DetectedFormat::Raw,
            DiskFormat::Qcow2 => DetectedFormat::Qcow2,
            DiskFormat::Iso => DetectedFormat::Iso,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_format_round_trips() {
        for f in DiskFormat::ALL {
            assert_eq!(f.to_string().parse::<DiskFormat>(), Ok(f));
            assert_eq!(DetectedFormat::from(f).disk_format(), Some(f));
        }
        assert_eq!("QCOW2".parse::<DiskFormat>(), Ok(DiskFormat::Qcow2));
        let err = "vmdk".parse::<DiskFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown disk format 'vmdk': use raw, qcow2 or iso"
        );
        assert!("".parse::<DiskFormat>().is_err());
        assert_eq!(DiskFormat::Iso.qemu_format(), "raw");
    }

    #[test]
    fn detected_names() {
        assert_eq!(DetectedFormat::Vhd.to_string(), "vhd");
        assert_eq!(DetectedFormat::Other("parallels").to_string(), "parallels");
        assert_eq!(DetectedFormat::Vmdk.disk_format(), None);
    }
}
