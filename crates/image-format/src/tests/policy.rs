//! The acceptance policy across formats: declared vs detected, unsupported
//! formats, empty files, reading limits.

use std::io::{self, Read, Seek, SeekFrom};

use super::{inspect_bytes, validate_bytes, Q};
use crate::{inspect, validate, validate_reader, DetectedFormat, DiskFormat, InspectError};

use DiskFormat::{Iso, Qcow2, Raw};

fn iso_bytes() -> Vec<u8> {
    let mut v = vec![0u8; 0x9000];
    v[0x8000] = 1; // primary volume descriptor
    v[0x8001..0x8006].copy_from_slice(b"CD001");
    v
}

#[test]
fn raw_is_accepted_with_file_length() {
    let i = validate_bytes(&[0u8; 1 << 20], Raw).unwrap();
    assert_eq!(i.format, DetectedFormat::Raw);
    assert_eq!(i.virtual_size, 1 << 20);
    assert_eq!(i.file_size, 1 << 20);
    assert!(i.qcow2.is_none());
    // An MBR boot sector followed by noise is raw too.
    let mut v = vec![0x5au8; 3000];
    v[..4].copy_from_slice(b"\xeb\x63\x90\x10");
    assert_eq!(validate_bytes(&v, Raw).unwrap().virtual_size, 3000);
}

#[test]
fn empty_image_is_refused_for_every_declared_format() {
    for d in DiskFormat::ALL {
        match validate_bytes(b"", d) {
            Err(InspectError::Malformed(m)) => assert!(m.contains("empty"), "{m}"),
            other => panic!("{d}: {other:?}"),
        }
    }
    // Inspection alone just reports it.
    let i = inspect_bytes(b"").unwrap();
    assert_eq!((i.format, i.virtual_size), (DetectedFormat::Raw, 0));
}

#[test]
fn declared_raw_but_qcow2_is_a_mismatch() {
    let q = Q::v3().build();
    match validate_bytes(&q, Raw) {
        Err(InspectError::Mismatch {
            declared: Raw,
            detected: DetectedFormat::Qcow2,
        }) => {}
        other => panic!("{other:?}"),
    }
    // Even a qcow2 header too broken to parse is a mismatch, not "raw".
    let mut broken = Q::v3().build();
    broken[4..8].copy_from_slice(&99u32.to_be_bytes());
    assert!(matches!(
        validate_bytes(&broken, Raw),
        Err(InspectError::Mismatch {
            detected: DetectedFormat::Qcow2,
            ..
        })
    ));
    assert!(matches!(
        validate_bytes(b"QFI\xfb", Raw),
        Err(InspectError::Mismatch {
            detected: DetectedFormat::Qcow2,
            ..
        })
    ));
}

#[test]
fn declared_qcow2_or_iso_but_raw_is_a_mismatch() {
    let zeros = vec![0u8; 1 << 16];
    for d in [Qcow2, Iso] {
        let e = validate_bytes(&zeros, d).unwrap_err();
        assert!(
            matches!(
                e,
                InspectError::Mismatch {
                    detected: DetectedFormat::Raw,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    let e = validate_bytes(&zeros, Iso).unwrap_err();
    assert_eq!(
        e.to_string(),
        "image declared iso but its bytes are raw (no ISO 9660 signature found)"
    );
    assert!(matches!(
        validate_bytes(&iso_bytes(), Qcow2),
        Err(InspectError::Mismatch {
            declared: Qcow2,
            detected: DetectedFormat::Iso
        })
    ));
    assert!(matches!(
        validate_bytes(&Q::v3().build(), Iso),
        Err(InspectError::Mismatch {
            declared: Iso,
            detected: DetectedFormat::Qcow2
        })
    ));
}

#[test]
fn iso_is_accepted_as_iso_and_as_raw() {
    let iso = iso_bytes();
    let i = validate_bytes(&iso, Iso).unwrap();
    assert_eq!(
        (i.format, i.virtual_size),
        (DetectedFormat::Iso, iso.len() as u64)
    );
    // A hybrid ISO / a disk holding an ISO 9660 filesystem is plain data read
    // raw; the inspection still says what it really is.
    let i = validate_bytes(&iso, Raw).unwrap();
    assert_eq!(i.format, DetectedFormat::Iso);
}

#[test]
fn other_formats_are_unsupported_whatever_was_declared() {
    let mut vdi = vec![0u8; 512];
    vdi[0x40..0x44].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
    let mut vhd_fixed = vec![0u8; 4096];
    vhd_fixed[4096 - 512..4096 - 504].copy_from_slice(b"conectix");
    let descriptor = b"# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"/etc/shadow\" 0\n".to_vec();
    let mut qcow1 = vec![0u8; 512];
    qcow1[..8].copy_from_slice(b"QFI\xfb\0\0\0\x01");
    let with_magic = |m: &[u8]| {
        let mut v = vec![0u8; 4096];
        v[..m.len()].copy_from_slice(m);
        v
    };
    let cases = [
        (with_magic(b"KDMV\x01\0\0\0"), DetectedFormat::Vmdk),
        (descriptor, DetectedFormat::Vmdk),
        (vdi, DetectedFormat::Vdi),
        (with_magic(b"conectix"), DetectedFormat::Vhd),
        (vhd_fixed, DetectedFormat::Vhd),
        (with_magic(b"vhdxfile"), DetectedFormat::Vhdx),
        (with_magic(b"QED\0"), DetectedFormat::Qed),
        (with_magic(b"LUKS\xba\xbe\0\x01"), DetectedFormat::Luks),
        (
            with_magic(b"WithoutFreeSpace"),
            DetectedFormat::Other("parallels"),
        ),
        (qcow1, DetectedFormat::Other("qcow")),
    ];
    for (bytes, want) in &cases {
        assert_eq!(inspect_bytes(bytes).unwrap().format, *want);
        for d in DiskFormat::ALL {
            match validate_bytes(bytes, d) {
                Err(InspectError::UnsupportedFormat(f)) => assert_eq!(f, *want),
                other => panic!("{want} declared {d}: {other:?}"),
            }
        }
    }
    let msg = InspectError::UnsupportedFormat(DetectedFormat::Vdi).to_string();
    assert!(
        msg.contains("vdi") && msg.contains("only raw, qcow2 and iso"),
        "{msg}"
    );
}

#[test]
fn validate_and_inspect_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("disk.qcow2");
    std::fs::write(&q, Q::v3().build()).unwrap();
    assert_eq!(validate(&q, Qcow2).unwrap().virtual_size, 1 << 30);
    assert_eq!(inspect(&q).unwrap().format, DetectedFormat::Qcow2);
    // A 10 GiB sparse raw file: only its head and tail are read.
    let big = dir.path().join("big.raw");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    assert_eq!(validate(&big, Raw).unwrap().virtual_size, 10 << 30);
    // A missing file is an I/O error with a readable message.
    let e = validate(&dir.path().join("nope"), Raw).unwrap_err();
    assert!(matches!(e, InspectError::Io(_)));
    assert!(
        e.to_string().starts_with("could not read the image file"),
        "{e}"
    );
}

/// A reader of `len` zero bytes (with `prefix` at the start) that counts what
/// is read, to prove inspection never reads whole files.
struct Counting {
    prefix: Vec<u8>,
    len: u64,
    pos: u64,
    read: u64,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let p = self.pos as usize + i;
            *b = self.prefix.get(p).copied().unwrap_or(0);
        }
        self.pos += n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

impl Seek for Counting {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

#[test]
fn reads_only_headers() {
    let mut r = Counting {
        prefix: Vec::new(),
        len: 1 << 40,
        pos: 0,
        read: 0,
    };
    let i = validate_reader(&mut r, Raw).unwrap();
    assert_eq!(i.virtual_size, 1 << 40);
    assert!(r.read <= 65 * 1024, "read {} bytes", r.read);

    // qcow2 with 2 MiB clusters: at most the first cluster more.
    let mut q = Q::v3();
    q.cluster_bits = 21;
    let mut r = Counting {
        prefix: q.build(),
        len: 8 << 20,
        pos: 0,
        read: 0,
    };
    validate_reader(&mut r, Qcow2).unwrap();
    assert!(r.read <= (2 << 20) + 65 * 1024, "read {} bytes", r.read);
}

/// A reader whose reads fail, as a disk error would.
struct Failing;

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("disk on fire"))
    }
}

impl Seek for Failing {
    fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
        Ok(4096)
    }
}

#[test]
fn read_errors_are_io_errors() {
    assert!(matches!(
        validate_reader(Failing, Raw),
        Err(InspectError::Io(_))
    ));
}
