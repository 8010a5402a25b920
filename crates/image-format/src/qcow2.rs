//! qcow2 header parser (QEMU's docs/interop/qcow2.txt), written from the spec
//! so uploads are judged before any QEMU tool opens them.
//!
//! [`parse`] reports what the header says (backing file, data file,
//! encryption, features) and fails only on headers that are structurally
//! impossible; the accept/refuse policy lives in [`crate::validate`].

use std::borrow::Cow;
use std::io::{Read, Seek};

use crate::detect::read_at;
use crate::InspectError;

/// Incompatible feature bit 0: refcounts may be stale (QEMU repairs on open).
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible feature bit 1: QEMU found the image corrupt.
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible feature bit 2: guest data lives in an external (host) file.
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature bit 3: non-zlib compression (`compression_type`).
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Incompatible feature bit 4: extended L2 entries (subclusters).
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
/// Every incompatible feature this parser understands.
pub const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
/// Autoclear feature bit 1: the external data file is a standalone raw image.
pub const AUTOCLEAR_DATA_FILE_RAW: u64 = 1 << 1;

/// Largest virtual size accepted (64 TiB): beyond any disk Nubis offers, and
/// keeps size arithmetic far from overflow.
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;

/// Longest backing file name the spec allows.
const MAX_BACKING_NAME: usize = 1023;
/// QEMU's limits on the L1 and refcount tables (bytes).
const MAX_L1_BYTES: u64 = 32 << 20;
const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// QEMU's limit on internal snapshots.
const MAX_SNAPSHOTS: u32 = 65536;

/// Header extension types (spec, "Header extensions").
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_CRYPTO_HEADER: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// What a qcow2 header says, as far as Nubis cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Info {
    /// Format version, 2 or 3.
    pub version: u32,
    /// log2 of the cluster size (9..=21).
    pub cluster_bits: u32,
    /// Header length in bytes (72 for v2).
    pub header_length: u32,
    /// 0 none, 1 AES, 2 LUKS.
    pub crypt_method: u32,
    /// Incompatible feature bits (0 for v2).
    pub incompatible_features: u64,
    /// Compatible feature bits (0 for v2).
    pub compatible_features: u64,
    /// Autoclear feature bits (0 for v2).
    pub autoclear_features: u64,
    /// log2 of the refcount width in bits (4 for v2).
    pub refcount_order: u32,
    /// 0 zlib, 1 zstd.
    pub compression_type: u8,
    /// Number of internal snapshots.
    pub nb_snapshots: u32,
    /// Backing file named by the header, escaped for display; `(unreadable)`
    /// if the header points at one whose name cannot be read.
    pub backing_file: Option<String>,
    /// Backing file format from the header extension, escaped for display.
    pub backing_format: Option<String>,
    /// External data file name from the header extension, escaped for display.
    pub data_file: Option<String>,
    /// A full-disk-encryption header extension is present.
    pub crypto_header: bool,
}

impl Qcow2Info {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Guest data would be read from a file outside the image.
    pub fn uses_data_file(&self) -> bool {
        self.data_file.is_some()
            || self.incompatible_features & INCOMPAT_DATA_FILE != 0
            || self.autoclear_features & AUTOCLEAR_DATA_FILE_RAW != 0
    }

    /// The image is encrypted by any method.
    pub fn is_encrypted(&self) -> bool {
        self.crypt_method != 0 || self.crypto_header
    }

    /// Incompatible feature bits this parser does not know.
    pub fn unknown_incompatible_features(&self) -> u64 {
        self.incompatible_features & !INCOMPAT_KNOWN
    }
}

/// Big-endian field readers that fail instead of panicking on short input.
fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn malformed(msg: impl Into<String>) -> InspectError {
    InspectError::Malformed(msg.into())
}

/// Turns an untrusted name into something safe to show or log: lossy UTF-8,
/// at most 1023 bytes, control characters escaped.
pub(crate) fn display_name(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(MAX_BACKING_NAME)];
    String::from_utf8_lossy(bytes).escape_debug().collect()
}

/// Parses the qcow2 header of `r`, returning it and the virtual size. `head` is
/// the start of the file as already read for detection; more of the first
/// cluster is read only if needed (at most 2 MiB, the largest cluster).
pub(crate) fn parse<R: Read + Seek>(
    r: &mut R,
    file_len: u64,
    head: &[u8],
) -> Result<(Qcow2Info, u64), InspectError> {
    let truncated = || malformed("qcow2 header is truncated");
    if head.len() < 72 {
        return Err(truncated());
    }
    let version = be32(head, 4).ok_or_else(truncated)?;
    if version != 2 && version != 3 {
        return Err(InspectError::Unsupported(format!(
            "qcow2 version {version} (only versions 2 and 3 are known)"
        )));
    }
    let f32_ = |off| be32(head, off).ok_or_else(truncated);
    let f64_ = |off| be64(head, off).ok_or_else(truncated);
    let backing_offset = f64_(8)?;
    let backing_size = f32_(16)?;
    let cluster_bits = f32_(20)?;
    let size = f64_(24)?;
    let crypt_method = f32_(32)?;
    let l1_size = f32_(36)?;
    let l1_offset = f64_(40)?;
    let reftable_offset = f64_(48)?;
    let reftable_clusters = f32_(56)?;
    let nb_snapshots = f32_(60)?;
    let snapshots_offset = f64_(64)?;

    if !(9..=21).contains(&cluster_bits) {
        return Err(malformed(format!(
            "qcow2 cluster_bits {cluster_bits} is outside 9..=21"
        )));
    }
    let cluster = 1u64 << cluster_bits;

    let (incompat, compat, autoclear, refcount_order, header_length) = if version == 3 {
        if head.len() < 104 {
            return Err(truncated());
        }
        (f64_(72)?, f64_(80)?, f64_(88)?, f32_(96)?, f32_(100)?)
    } else {
        (0, 0, 0, 4, 72)
    };
    if version == 3 {
        if header_length < 104 || header_length % 8 != 0 {
            return Err(malformed(format!(
                "qcow2 v3 header_length {header_length} must be at least 104 and a multiple of 8"
            )));
        }
        if u64::from(header_length) > cluster {
            return Err(malformed("qcow2 header is longer than its first cluster"));
        }
    }
    if refcount_order > 6 {
        return Err(malformed(format!(
            "qcow2 refcount_order {refcount_order} exceeds 6"
        )));
    }

    // Everything else lives in the first cluster (or what exists of it).
    let first = first_cluster(r, file_len, head, cluster)?;
    if first.len() < header_length as usize {
        return Err(truncated());
    }

    let compression_type = if header_length > 104 {
        first.get(104).copied().unwrap_or(0)
    } else {
        0
    };
    if incompat & INCOMPAT_COMPRESSION != 0 {
        match compression_type {
            0 => {
                return Err(malformed(
                    "qcow2 compression type bit is set but compression_type is zlib",
                ))
            }
            1 => {}
            t => {
                return Err(InspectError::Unsupported(format!(
                    "qcow2 compression type {t}"
                )))
            }
        }
    } else if compression_type != 0 {
        return Err(malformed(
            "qcow2 compression_type is set without its incompatible feature bit",
        ));
    }
    if incompat & INCOMPAT_EXTL2 != 0 && cluster_bits < 14 {
        return Err(malformed(
            "qcow2 extended L2 entries need clusters of at least 16 KiB",
        ));
    }

    if size > MAX_VIRTUAL_SIZE {
        return Err(malformed(format!(
            "qcow2 virtual size {size} bytes exceeds the 64 TiB limit"
        )));
    }
    check_tables(&Tables {
        cluster,
        extl2: incompat & INCOMPAT_EXTL2 != 0,
        size,
        file_len,
        l1_size,
        l1_offset,
        reftable_offset,
        reftable_clusters,
        nb_snapshots,
        snapshots_offset,
    })?;

    // Backing file name, limited to the first cluster as QEMU does.
    let backing_file = if backing_offset != 0 || backing_size != 0 {
        let name = usize::try_from(backing_offset)
            .ok()
            .filter(|&o| o >= header_length as usize && backing_size as usize <= MAX_BACKING_NAME)
            .and_then(|o| first.get(o..o.checked_add(backing_size as usize)?))
            .filter(|n| !n.is_empty());
        Some(name.map_or_else(|| "(unreadable)".to_owned(), display_name))
    } else {
        None
    };
    // Extensions end where the backing file name starts, else at the cluster end.
    let ext_end = if backing_offset != 0 {
        backing_offset.min(cluster)
    } else {
        cluster
    };
    let ext = parse_extensions(&first, header_length as usize, ext_end as usize)?;

    let info = Qcow2Info {
        version,
        cluster_bits,
        header_length,
        crypt_method,
        incompatible_features: incompat,
        compatible_features: compat,
        autoclear_features: autoclear,
        refcount_order,
        compression_type,
        nb_snapshots,
        backing_file,
        backing_format: ext.backing_format,
        data_file: ext.data_file,
        crypto_header: ext.crypto_header,
    };
    Ok((info, size))
}

/// The first cluster, or as much of it as the file has.
fn first_cluster<'a, R: Read + Seek>(
    r: &mut R,
    file_len: u64,
    head: &'a [u8],
    cluster: u64,
) -> Result<Cow<'a, [u8]>, InspectError> {
    let want = cluster.min(file_len);
    if head.len() as u64 >= want {
        Ok(Cow::Borrowed(&head[..want as usize]))
    } else {
        Ok(Cow::Owned(read_at(r, 0, want)?))
    }
}

/// Header fields locating the metadata tables, checked together.
struct Tables {
    cluster: u64,
    extl2: bool,
    size: u64,
    file_len: u64,
    l1_size: u32,
    l1_offset: u64,
    reftable_offset: u64,
    reftable_clusters: u32,
    nb_snapshots: u32,
    snapshots_offset: u64,
}

/// Tables must be cluster aligned, after the header cluster and inside the
/// file; the L1 table must be big enough to map the virtual size.
fn check_tables(t: &Tables) -> Result<(), InspectError> {
    let entry = if t.extl2 { 16 } else { 8 };
    // Bytes mapped by one L1 entry: cluster * (cluster / L2 entry size), <= 2^39.
    let per_l1 = t.cluster * (t.cluster / entry);
    let l1_needed = t.size.div_ceil(per_l1);
    let l1_bytes = u64::from(t.l1_size) * 8;
    if l1_bytes > MAX_L1_BYTES {
        return Err(malformed("qcow2 L1 table is too large"));
    }
    if u64::from(t.l1_size) < l1_needed {
        return Err(malformed(
            "qcow2 L1 table is too small for the virtual size",
        ));
    }
    let table_ok = |offset: u64, bytes: u64| {
        offset % t.cluster == 0
            && offset >= t.cluster
            && offset
                .checked_add(bytes)
                .is_some_and(|end| end <= t.file_len)
    };
    if t.l1_size > 0 && !table_ok(t.l1_offset, l1_bytes) {
        return Err(malformed(
            "qcow2 L1 table offset/size does not fit in the file",
        ));
    }
    let reftable_bytes = u64::from(t.reftable_clusters) * t.cluster;
    if t.reftable_clusters == 0 || reftable_bytes > MAX_REFTABLE_BYTES {
        return Err(malformed("qcow2 refcount table size is out of range"));
    }
    if !table_ok(t.reftable_offset, reftable_bytes) {
        return Err(malformed(
            "qcow2 refcount table offset/size does not fit in the file",
        ));
    }
    if t.nb_snapshots > MAX_SNAPSHOTS {
        return Err(malformed("qcow2 has too many snapshots"));
    }
    if t.nb_snapshots > 0 && !table_ok(t.snapshots_offset, 1) {
        return Err(malformed(
            "qcow2 snapshot table offset does not fit in the file",
        ));
    }
    Ok(())
}

/// What the header extensions say.
#[derive(Default)]
struct Extensions {
    backing_format: Option<String>,
    data_file: Option<String>,
    crypto_header: bool,
}

/// Walks the header extensions from `start` up to `end` (within the first
/// cluster). An extension that would cross `end` or the end of the file is
/// malformed; unknown extensions are skipped, as the spec allows.
fn parse_extensions(first: &[u8], start: usize, end: usize) -> Result<Extensions, InspectError> {
    let mut ext = Extensions::default();
    let past_end = || {
        malformed(
            "qcow2 header extensions run past the first cluster or into the backing file name",
        )
    };
    let past_eof = || malformed("qcow2 header extensions run past the end of the file");
    let mut off = start;
    while off < end {
        if end - off < 8 {
            return Err(past_end());
        }
        let kind = be32(first, off).ok_or_else(past_eof)?;
        let len = be32(first, off + 4).ok_or_else(past_eof)? as usize;
        if kind == EXT_END {
            break;
        }
        off += 8;
        if len > end - off {
            return Err(past_end());
        }
        let data = first.get(off..off + len).ok_or_else(past_eof)?;
        match kind {
            EXT_BACKING_FORMAT => ext.backing_format = Some(display_name(data)),
            EXT_DATA_FILE => ext.data_file = Some(display_name(data)),
            EXT_CRYPTO_HEADER => ext.crypto_header = true,
            _ => {}
        }
        // Data is padded to a multiple of 8; `len <= end` keeps this small.
        off += len.div_ceil(8) * 8;
    }
    Ok(ext)
}
