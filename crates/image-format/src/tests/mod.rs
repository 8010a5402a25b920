//! Unit tests: images are built byte by byte here, so every case is explicit.

mod fuzz;
mod policy;
mod qcow2_headers;

use std::io::Cursor;

use crate::{inspect_reader, validate_reader, DiskFormat, InspectError, Inspection};

/// Validates in-memory bytes.
fn validate_bytes(b: &[u8], declared: DiskFormat) -> Result<Inspection, InspectError> {
    validate_reader(Cursor::new(b), declared)
}

/// Inspects in-memory bytes.
fn inspect_bytes(b: &[u8]) -> Result<Inspection, InspectError> {
    inspect_reader(Cursor::new(b))
}

/// A hand-built qcow2 image: header in cluster 0, refcount table in cluster 1,
/// refcount block in cluster 2, L1 table in cluster 3. Fields are public so a
/// test can break exactly one thing.
#[derive(Clone)]
pub(crate) struct Q {
    pub version: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub incompat: u64,
    pub compat: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
    /// 0 means "the natural length" (112 for v3).
    pub header_length: u32,
    pub compression_type: u8,
    /// Header extensions (type, data), written in order before the end marker.
    pub extensions: Vec<(u32, Vec<u8>)>,
    /// Backing file name, stored after the extensions.
    pub backing: Option<Vec<u8>>,
    /// Overrides applied after layout: (offset, big-endian bytes).
    pub patches: Vec<(usize, Vec<u8>)>,
}

impl Q {
    pub fn v3() -> Self {
        Q {
            version: 3,
            cluster_bits: 16,
            size: 1 << 30,
            crypt_method: 0,
            incompat: 0,
            compat: 0,
            autoclear: 0,
            refcount_order: 4,
            header_length: 0,
            compression_type: 0,
            extensions: Vec::new(),
            backing: None,
            patches: Vec::new(),
        }
    }

    pub fn v2() -> Self {
        Q {
            version: 2,
            ..Q::v3()
        }
    }

    pub fn cluster(&self) -> usize {
        1 << self.cluster_bits
    }

    /// Lays the image out; keeps going with nonsense values so tests can
    /// build broken headers too.
    pub fn build(&self) -> Vec<u8> {
        let c = self.cluster();
        let mut v = vec![0u8; 4 * c];
        let put32 =
            |v: &mut Vec<u8>, off: usize, x: u32| v[off..off + 4].copy_from_slice(&x.to_be_bytes());
        let put64 =
            |v: &mut Vec<u8>, off: usize, x: u64| v[off..off + 8].copy_from_slice(&x.to_be_bytes());
        v[..4].copy_from_slice(b"QFI\xfb");
        put32(&mut v, 4, self.version);
        put32(&mut v, 20, self.cluster_bits);
        put64(&mut v, 24, self.size);
        put32(&mut v, 32, self.crypt_method);
        let entry = if self.incompat & crate::qcow2::INCOMPAT_EXTL2 != 0 {
            16
        } else {
            8
        };
        let per_l1 = (c as u64) * (c as u64 / entry);
        let l1_size = self.size.div_ceil(per_l1).max(1) as u32;
        put32(&mut v, 36, l1_size);
        put64(&mut v, 40, 3 * c as u64);
        put64(&mut v, 48, c as u64);
        put32(&mut v, 56, 1);
        let mut off = if self.version >= 3 {
            let hl = if self.header_length == 0 {
                112
            } else {
                self.header_length
            };
            put64(&mut v, 72, self.incompat);
            put64(&mut v, 80, self.compat);
            put64(&mut v, 88, self.autoclear);
            put32(&mut v, 96, self.refcount_order);
            put32(&mut v, 100, hl);
            v[104] = self.compression_type;
            hl as usize
        } else {
            72
        };
        for (kind, data) in &self.extensions {
            put32(&mut v, off, *kind);
            put32(&mut v, off + 4, data.len() as u32);
            v[off + 8..off + 8 + data.len()].copy_from_slice(data);
            off += 8 + data.len().div_ceil(8) * 8;
        }
        off += 8; // end marker: zeros
        if let Some(name) = &self.backing {
            put64(&mut v, 8, off as u64);
            put32(&mut v, 16, name.len() as u32);
            v[off..off + name.len()].copy_from_slice(name);
        }
        // Refcount table -> block in cluster 2; the first 4 clusters in use.
        put64(&mut v, c, 2 * c as u64);
        for i in 0..4 {
            v[2 * c + 2 * i + 1] = 1;
        }
        for (off, bytes) in &self.patches {
            v[*off..*off + bytes.len()].copy_from_slice(bytes);
        }
        v
    }
}
