//! Inspects uploaded disk images with Nubis' own parser, before any QEMU tool
//! touches them, and decides whether they may be accepted.
//!
//! Uploaded images are an attack vector: a qcow2 backing file or external data
//! file, or a VMDK descriptor, can name a host file that the platform would
//! then read and leak; an image declared raw that is really qcow2 turns into
//! one of those as soon as something probes its format. So:
//!
//! * [`inspect`] detects what the bytes really are (from magic numbers, never
//!   from the file name or the user's word) and, for qcow2, parses the header.
//!   It reads only the head and tail of the file.
//! * [`validate`] applies the policy: the detected format must be raw, qcow2 or
//!   iso and match the declared one, and a qcow2 image must be self-contained
//!   (no backing file, no external data file), unencrypted and use only known
//!   features.
//!
//! After validation, always pass the format explicitly to QEMU
//! ([`DiskFormat::qemu_format`]); never let it probe.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod detect;
mod error;
mod format;
mod qcow2;

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

pub use error::InspectError;
pub use format::{DetectedFormat, DiskFormat, ParseDiskFormatError};
pub use qcow2::{Qcow2Info, MAX_VIRTUAL_SIZE};

/// What an image file really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The format its bytes are in.
    pub format: DetectedFormat,
    /// Size of the disk the guest sees, in bytes: the file length for raw and
    /// iso, the header's size for qcow2, and 0 for formats Nubis does not parse.
    pub virtual_size: u64,
    /// Length of the image file itself, in bytes.
    pub file_size: u64,
    /// The parsed header, for qcow2 images only.
    pub qcow2: Option<Qcow2Info>,
}

/// Inspects the image at `path` without applying any policy.
pub fn inspect(path: &Path) -> Result<Inspection, InspectError> {
    inspect_reader(File::open(path)?)
}

/// Inspects an image from any seekable reader without applying any policy.
///
/// Fails only on I/O errors and on qcow2 headers that cannot be parsed;
/// backing files, data files and encryption are reported in [`Qcow2Info`].
pub fn inspect_reader<R: Read + Seek>(mut r: R) -> Result<Inspection, InspectError> {
    let probe = detect::read_probe(&mut r)?;
    let format = detect::detect(&probe);
    finish(&mut r, &probe, format)
}

/// Inspects the image at `path` and applies the acceptance policy for an
/// upload the user declared as `declared`.
///
/// Validate the very file that will be used, once the upload is complete and
/// nothing else can write to it: a check on a file that changes afterwards
/// proves nothing. See [`validate_reader`] for the policy.
pub fn validate(path: &Path, declared: DiskFormat) -> Result<Inspection, InspectError> {
    validate_reader(File::open(path)?, declared)
}

/// [`validate`] for any seekable reader.
///
/// Policy, in order:
/// 1. An empty file is [`InspectError::Malformed`].
/// 2. A detected format other than raw, qcow2 or iso is
///    [`InspectError::UnsupportedFormat`], whatever was declared.
/// 3. The detected format must equal the declared one, except that an image
///    declared raw may contain an ISO 9660 filesystem (a hybrid ISO or a disk
///    holding a CD filesystem is still plain data when read raw); otherwise
///    [`InspectError::Mismatch`]. This runs before the qcow2 header is parsed,
///    so a "raw" upload with a broken qcow2 header still reports the mismatch.
/// 4. qcow2: no backing file, no external data file, no encryption, no
///    unknown incompatible features, not marked corrupt, virtual size not 0.
pub fn validate_reader<R: Read + Seek>(
    mut r: R,
    declared: DiskFormat,
) -> Result<Inspection, InspectError> {
    let probe = detect::read_probe(&mut r)?;
    if probe.len == 0 {
        return Err(InspectError::Malformed("image is empty (0 bytes)".into()));
    }
    let detected = detect::detect(&probe);
    if detected.disk_format().is_none() {
        return Err(InspectError::UnsupportedFormat(detected));
    }
    let matches = detected.disk_format() == Some(declared)
        || (declared == DiskFormat::Raw && detected == DetectedFormat::Iso);
    if !matches {
        return Err(InspectError::Mismatch { declared, detected });
    }
    let inspection = finish(&mut r, &probe, detected)?;
    if let Some(q) = &inspection.qcow2 {
        check_qcow2(q, inspection.virtual_size)?;
    }
    Ok(inspection)
}

/// Builds the [`Inspection`] once the format is known.
fn finish<R: Read + Seek>(
    r: &mut R,
    probe: &detect::Probe,
    format: DetectedFormat,
) -> Result<Inspection, InspectError> {
    let (virtual_size, qcow2) = match format {
        DetectedFormat::Raw | DetectedFormat::Iso => (probe.len, None),
        DetectedFormat::Qcow2 => {
            let (info, size) = qcow2::parse(r, probe.len, &probe.head)?;
            (size, Some(info))
        }
        _ => (0, None),
    };
    Ok(Inspection {
        format,
        virtual_size,
        file_size: probe.len,
        qcow2,
    })
}

/// The qcow2 part of the policy; the order puts the most useful message first.
fn check_qcow2(q: &Qcow2Info, virtual_size: u64) -> Result<(), InspectError> {
    if let Some(name) = &q.backing_file {
        return Err(InspectError::BackingFile(name.clone()));
    }
    if q.uses_data_file() {
        let name = q.data_file.clone().unwrap_or_else(|| "(unnamed)".into());
        return Err(InspectError::DataFile(name));
    }
    if q.is_encrypted() {
        return Err(InspectError::Encrypted);
    }
    let unknown = q.unknown_incompatible_features();
    if unknown != 0 {
        return Err(InspectError::Unsupported(format!(
            "qcow2 uses unknown incompatible features {unknown:#x}"
        )));
    }
    if q.incompatible_features & qcow2::INCOMPAT_CORRUPT != 0 {
        return Err(InspectError::Malformed(
            "qcow2 image is marked corrupt; repair it with `qemu-img check -r all`".into(),
        ));
    }
    if virtual_size == 0 {
        return Err(InspectError::Malformed(
            "qcow2 image has a virtual size of 0 bytes".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
