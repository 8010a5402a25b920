//! Errors returned when an image cannot be inspected or is refused.
//!
//! Every message is meant to be shown to the user who uploaded the image, so it
//! says what is wrong and, where there is one, what to do about it.

use crate::{DetectedFormat, DiskFormat};

/// Why an image could not be inspected, or why [`crate::validate`] refused it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// Reading the file failed; nothing is known about the image.
    #[error("could not read the image file: {0}")]
    Io(#[from] std::io::Error),

    /// The bytes are a format Nubis accepts, but not the one the user declared.
    /// Accepting it anyway would let a "raw" upload be opened as qcow2 (or the
    /// reverse) somewhere that trusts the declared format.
    #[error("image declared {declared} but its bytes are {detected}{}", mismatch_hint(*.declared, *.detected))]
    Mismatch {
        /// The format the user said the image is in.
        declared: DiskFormat,
        /// The format its bytes really are.
        detected: DetectedFormat,
    },

    /// The bytes are a format Nubis never accepts (vmdk, vdi, vhd, ...),
    /// whatever was declared: those formats can name host files or are not
    /// worth the attack surface.
    #[error("image is {0}, a format Nubis does not accept (only raw, qcow2 and iso): convert it first, e.g. `qemu-img convert -O qcow2 image.{0} image.qcow2`")]
    UnsupportedFormat(DetectedFormat),

    /// A qcow2 header names a backing file, which would make the platform read
    /// a host file. The name is escaped for display and `(unreadable)` when it
    /// cannot be read.
    #[error("qcow2 image names a backing file '{0}': images must be self-contained (flatten it with `qemu-img convert -O qcow2`)")]
    BackingFile(String),

    /// A qcow2 header uses an external data file, which would make the platform
    /// read a host file. The name is escaped, or `(unnamed)` when only the
    /// feature bit is set.
    #[error("qcow2 image uses an external data file '{0}': images must be self-contained (convert it with `qemu-img convert -O qcow2`)")]
    DataFile(String),

    /// The image is encrypted; Nubis has no key for it and could not boot it.
    #[error("image is encrypted: upload an unencrypted image")]
    Encrypted,

    /// A qcow2 image uses a version or feature this parser does not know; an
    /// unknown incompatible feature could change how every byte is read.
    #[error("unsupported image: {0}")]
    Unsupported(String),

    /// The header is inconsistent, truncated or out of range (including an
    /// empty file).
    #[error("malformed image: {0}")]
    Malformed(String),
}

/// Extra words for [`InspectError::Mismatch`], so the user knows which signature
/// was (not) found.
fn mismatch_hint(declared: DiskFormat, detected: DetectedFormat) -> &'static str {
    match (declared, detected) {
        (DiskFormat::Qcow2, DetectedFormat::Raw | DetectedFormat::Iso) => {
            " (no qcow2 header found)"
        }
        (DiskFormat::Iso, DetectedFormat::Raw) => " (no ISO 9660 signature found)",
        _ => " (upload it declared as its real format)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_readable() {
        let e = InspectError::Mismatch {
            declared: DiskFormat::Raw,
            detected: DetectedFormat::Qcow2,
        };
        assert_eq!(
            e.to_string(),
            "image declared raw but its bytes are qcow2 (upload it declared as its real format)"
        );
        let e = InspectError::BackingFile("/etc/passwd".into());
        assert!(e.to_string().starts_with(
            "qcow2 image names a backing file '/etc/passwd': images must be self-contained"
        ));
        let e = InspectError::UnsupportedFormat(DetectedFormat::Vmdk);
        assert!(e
            .to_string()
            .starts_with("image is vmdk, a format Nubis does not accept"));
        let e = InspectError::Mismatch {
            declared: DiskFormat::Iso,
            detected: DetectedFormat::Raw,
        };
        assert_eq!(
            e.to_string(),
            "image declared iso but its bytes are raw (no ISO 9660 signature found)"
        );
    }
}
