//! Property-style test: many random, mutated and truncated images must never
//! panic, and never be accepted when they carry a backing or data file.

use super::{inspect_bytes, validate_bytes, Q};
use crate::{DiskFormat, InspectError};

/// xorshift64*: deterministic, so a failure reproduces from its case number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
    /// A value that is often at a boundary, since that is where bugs live.
    fn interesting(&mut self) -> u64 {
        const EDGES: [u64; 12] = [0, 1, 2, 7, 8, 9, 21, 22, 72, 104, 1 << 16, 1 << 21];
        match self.below(4) {
            0 => EDGES[self.below(EDGES.len() as u64) as usize],
            1 => u64::MAX - self.below(3),
            2 => u64::from(u32::MAX) - self.below(3),
            _ => self.next(),
        }
    }
}

/// Runs every entry point; a panic fails the test.
fn exercise(bytes: &[u8]) {
    let _ = inspect_bytes(bytes);
    for d in DiskFormat::ALL {
        let _ = validate_bytes(bytes, d);
    }
}

fn seed_image(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => {
            let mut v = vec![0u8; rng.below(70_000) as usize];
            rng.fill(&mut v);
            v
        }
        1 => Q::v2().build(),
        2 => {
            let mut q = Q::v3();
            q.cluster_bits = 9 + rng.below(4) as u32;
            q.size = 1 << 20;
            q.extensions = vec![(0x4441_5441, b"/etc/shadow".to_vec())];
            q.backing = Some(b"/etc/passwd".to_vec());
            q.build()
        }
        3 => {
            let mut v = vec![0u8; 0x9800];
            v[0x8001..0x8006].copy_from_slice(b"CD001");
            v
        }
        4 => b"# Disk DescriptorFile\nversion=1\nRW 8 FLAT \"/etc/shadow\" 0\n".to_vec(),
        _ => Q::v3().build(),
    }
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let mut rng = Rng(0x6e75_6269_735f_696d);
    for case in 0..4000 {
        let mut v = seed_image(&mut rng);
        if !v.is_empty() {
            // Mutate header fields (big-endian u32/u64 at 4-byte boundaries
            // in the first 160 bytes) and random bytes anywhere.
            for _ in 0..rng.below(4) {
                let off = (rng.below(40) * 4) as usize;
                let val = rng.interesting();
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let bytes = val.to_be_bytes();
                if off + width <= v.len() {
                    v[off..off + width].copy_from_slice(&bytes[8 - width..]);
                }
            }
            for _ in 0..rng.below(4) {
                let i = rng.below(v.len() as u64) as usize;
                v[i] = rng.next() as u8;
            }
            if rng.below(3) == 0 {
                v.truncate(rng.below(v.len() as u64 + 1) as usize);
            }
        }
        exercise(&v);
        let _ = case;
    }
}

#[test]
fn every_prefix_of_real_headers_is_safe() {
    let mut with_files = Q::v3();
    with_files.extensions = vec![(0x4441_5441, b"/etc/shadow".to_vec())];
    with_files.backing = Some(b"/etc/passwd".to_vec());
    for q in [Q::v2(), Q::v3(), with_files] {
        let full = q.build();
        for len in (0..=1024).chain((1025..full.len()).step_by(997)) {
            exercise(&full[..len]);
        }
    }
}

#[test]
fn mutations_never_smuggle_a_backing_or_data_file() {
    // Whatever is flipped in the header, an image naming host files must
    // never validate: the names sit in the first cluster, the checks look there.
    let mut rng = Rng(42);
    let mut q = Q::v3();
    q.incompat = crate::qcow2::INCOMPAT_DATA_FILE;
    q.extensions = vec![(0x4441_5441, b"/etc/shadow".to_vec())];
    q.backing = Some(b"/etc/passwd".to_vec());
    let base = q.build();
    for _ in 0..2000 {
        let mut v = base.clone();
        let i = 4 + rng.below(300) as usize; // keep the magic
        v[i] = rng.next() as u8;
        if let Ok(ins) = validate_bytes(&v, DiskFormat::Qcow2) {
            panic!("byte {i} flipped to {:#x} was accepted: {ins:?}", v[i]);
        }
        // Declared raw it must not pass either.
        assert!(matches!(
            validate_bytes(&v, DiskFormat::Raw),
            Err(InspectError::Mismatch { .. } | InspectError::UnsupportedFormat(_))
        ));
    }
}
