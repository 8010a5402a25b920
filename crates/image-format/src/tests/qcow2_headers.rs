//! Hand-written qcow2 headers: what is accepted, what is refused and why.

use super::{inspect_bytes, validate_bytes, Q};
use crate::qcow2::{
    INCOMPAT_COMPRESSION, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_DIRTY, INCOMPAT_EXTL2,
};
use crate::{DiskFormat, InspectError, Inspection};

const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
const EXT_CRYPTO: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

fn check(q: &Q) -> Result<Inspection, InspectError> {
    validate_bytes(&q.build(), DiskFormat::Qcow2)
}

fn malformed(q: &Q, needle: &str) {
    match check(q) {
        Err(InspectError::Malformed(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected Malformed({needle}): {other:?}"),
    }
}

fn patch32(q: &mut Q, off: usize, x: u32) {
    q.patches.push((off, x.to_be_bytes().to_vec()));
}

fn patch64(q: &mut Q, off: usize, x: u64) {
    q.patches.push((off, x.to_be_bytes().to_vec()));
}

#[test]
fn plain_v2_and_v3_are_accepted() {
    let i = check(&Q::v2()).unwrap();
    let info = i.qcow2.unwrap();
    assert_eq!(
        (i.virtual_size, info.version, info.header_length),
        (1 << 30, 2, 72)
    );
    assert_eq!(info.refcount_order, 4);

    let i = check(&Q::v3()).unwrap();
    let info = i.qcow2.unwrap();
    assert_eq!(
        (info.version, info.cluster_bits, info.header_length),
        (3, 16, 112)
    );
    assert_eq!(info.cluster_size(), 65536);
    assert_eq!(i.file_size, 4 * 65536);
}

#[test]
fn known_features_and_extensions_are_accepted() {
    let mut q = Q::v3();
    q.incompat = INCOMPAT_COMPRESSION;
    q.compression_type = 1; // zstd
    assert_eq!(check(&q).unwrap().qcow2.unwrap().compression_type, 1);

    let mut q = Q::v3();
    q.incompat = INCOMPAT_EXTL2 | INCOMPAT_DIRTY;
    q.compat = 1; // lazy refcounts
    check(&q).unwrap();

    let mut q = Q::v3();
    q.extensions = vec![
        (EXT_FEATURE_TABLE, vec![0u8; 48 * 3]),
        (0x1234_5678, b"unknown, ignored".to_vec()),
        (EXT_BACKING_FORMAT, b"raw".to_vec()), // harmless without a backing file
    ];
    assert_eq!(
        check(&q).unwrap().qcow2.unwrap().backing_format.as_deref(),
        Some("raw")
    );

    for bits in [9, 12, 21] {
        let mut q = Q::v3();
        q.cluster_bits = bits;
        q.size = 1 << 20;
        check(&q).unwrap();
    }
}

#[test]
fn backing_file_is_refused_with_its_name() {
    for base in [Q::v2(), Q::v3()] {
        let mut q = base;
        q.backing = Some(b"/etc/passwd".to_vec());
        let i = inspect_bytes(&q.build()).unwrap();
        assert_eq!(
            i.qcow2.unwrap().backing_file.as_deref(),
            Some("/etc/passwd")
        );
        let e = check(&q).unwrap_err();
        assert!(
            matches!(&e, InspectError::BackingFile(n) if n == "/etc/passwd"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "qcow2 image names a backing file '/etc/passwd': images must be self-contained (flatten it with `qemu-img convert -O qcow2`)"
        );
    }
    // Control characters in the name are escaped, not echoed into logs.
    let mut q = Q::v3();
    q.backing = Some(b"evil\n\x1b[31mname".to_vec());
    assert!(
        matches!(check(&q), Err(InspectError::BackingFile(n)) if n == "evil\\n\\u{1b}[31mname")
    );
}

#[test]
fn unreadable_backing_file_is_still_refused() {
    let unreadable = |q: &Q| match check(q) {
        Err(InspectError::BackingFile(n)) => assert_eq!(n, "(unreadable)"),
        other => panic!("{other:?}"),
    };
    // Size without offset.
    let mut q = Q::v3();
    patch32(&mut q, 16, 10);
    unreadable(&q);
    // Offset without size.
    let mut q = Q::v3();
    patch64(&mut q, 8, 512);
    unreadable(&q);
    // Name past the first cluster.
    let mut q = Q::v3();
    patch64(&mut q, 8, 1 << 20);
    patch32(&mut q, 16, 8);
    unreadable(&q);
    // Name longer than 1023 bytes.
    let mut q = Q::v3();
    q.backing = Some(vec![b'a'; 1024]);
    unreadable(&q);
    // Offset that overflows.
    let mut q = Q::v3();
    patch64(&mut q, 8, u64::MAX);
    patch32(&mut q, 16, u32::MAX);
    unreadable(&q);
}

#[test]
fn external_data_file_is_refused() {
    let mut q = Q::v3();
    q.incompat = INCOMPAT_DATA_FILE;
    q.extensions = vec![(EXT_DATA_FILE, b"/dev/sda".to_vec())];
    let e = check(&q).unwrap_err();
    assert!(
        matches!(&e, InspectError::DataFile(n) if n == "/dev/sda"),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .starts_with("qcow2 image uses an external data file '/dev/sda'"));

    // The bit alone, the extension alone, the raw-data-file autoclear bit alone.
    let mut bit_only = Q::v3();
    bit_only.incompat = INCOMPAT_DATA_FILE;
    let mut ext_only = Q::v3();
    ext_only.extensions = vec![(EXT_DATA_FILE, b"/etc/shadow".to_vec())];
    let mut autoclear = Q::v3();
    autoclear.autoclear = 1 << 1;
    for (q, name) in [
        (bit_only, "(unnamed)"),
        (ext_only, "/etc/shadow"),
        (autoclear, "(unnamed)"),
    ] {
        assert!(matches!(check(&q), Err(InspectError::DataFile(n)) if n == name));
    }
}

#[test]
fn encryption_is_refused() {
    for method in [1, 2, 77] {
        let mut q = Q::v3();
        q.crypt_method = method;
        assert!(matches!(check(&q), Err(InspectError::Encrypted)));
    }
    let mut q = Q::v3();
    q.extensions = vec![(EXT_CRYPTO, vec![0u8; 16])];
    assert!(matches!(check(&q), Err(InspectError::Encrypted)));
    let mut q = Q::v2();
    q.crypt_method = 1;
    assert!(matches!(check(&q), Err(InspectError::Encrypted)));
}

#[test]
fn unknown_incompatible_features_and_versions_are_unsupported() {
    for bit in [5, 17, 63] {
        let mut q = Q::v3();
        q.incompat = 1 << bit;
        assert!(
            matches!(check(&q), Err(InspectError::Unsupported(m)) if m.contains("incompatible"))
        );
    }
    for version in [0, 4, u32::MAX] {
        let mut q = Q::v3();
        q.version = version;
        let e = check(&q).unwrap_err();
        assert!(
            matches!(&e, InspectError::Unsupported(m) if m.contains("version")),
            "{e:?}"
        );
        // inspect() cannot parse it either.
        assert!(inspect_bytes(&q.build()).is_err());
    }
    let mut q = Q::v3();
    q.incompat = INCOMPAT_COMPRESSION;
    q.compression_type = 2;
    assert!(matches!(check(&q), Err(InspectError::Unsupported(m)) if m.contains("compression")));
}

#[test]
fn corrupt_and_empty_virtual_disks_are_refused() {
    let mut q = Q::v3();
    q.incompat = INCOMPAT_CORRUPT;
    malformed(&q, "corrupt");
    let mut q = Q::v3();
    q.size = 0;
    malformed(&q, "virtual size of 0");
}

#[test]
fn out_of_range_fields_are_malformed() {
    for bits in [0, 8, 22, 64, u32::MAX] {
        let mut q = Q::v3();
        patch32(&mut q, 20, bits);
        malformed(&q, "cluster_bits");
    }
    let mut q = Q::v3();
    patch64(&mut q, 24, (64 << 40) + 1);
    malformed(&q, "64 TiB");
    patch64(&mut q, 24, u64::MAX);
    malformed(&q, "64 TiB");

    for hl in [0, 72, 100, 108, 1 << 17] {
        let mut q = Q::v3();
        patch32(&mut q, 100, hl);
        if hl > 4096 {
            malformed(&q, "longer than its first cluster");
        } else {
            malformed(&q, "header_length");
        }
    }
    let mut q = Q::v3();
    q.refcount_order = 7;
    malformed(&q, "refcount_order");

    let mut q = Q::v3();
    q.compression_type = 1; // without the incompatible bit
    malformed(&q, "compression_type");
    let mut q = Q::v3();
    q.incompat = INCOMPAT_COMPRESSION; // with the bit but zlib
    malformed(&q, "compression type bit");

    let mut q = Q::v3();
    q.cluster_bits = 12;
    q.size = 1 << 20;
    q.incompat = INCOMPAT_EXTL2;
    malformed(&q, "extended L2");
}

#[test]
fn tables_must_fit() {
    let c = 65536u64;
    let cases: [(usize, u64, bool, &str); 8] = [
        (36, 1, false, "L1 table is too small"), // 1 GiB needs 2 entries
        (36, 5 << 20, false, "L1 table is too large"), // > 32 MiB of entries
        (40, 3 * c + 8, true, "L1 table offset"), // misaligned
        (40, 0, true, "L1 table offset"),        // overlaps the header
        (40, 100 * c, true, "L1 table offset"),  // past the end of the file
        (40, u64::MAX - c + 1, true, "L1 table offset"), // overflows
        (48, 7 * c, true, "refcount table offset"), // past the end of the file
        (56, 0, false, "refcount table size"),   // no refcount table
    ];
    for (off, val, wide, needle) in cases {
        let mut q = Q::v3();
        if wide {
            patch64(&mut q, off, val);
        } else {
            patch32(&mut q, off, val as u32);
        }
        malformed(&q, needle);
    }
    let mut q = Q::v3();
    patch32(&mut q, 60, 1); // one snapshot, table at offset 0
    malformed(&q, "snapshot");
    patch64(&mut q, 64, 2 * c);
    check(&q).unwrap();
    patch32(&mut q, 60, 70_000);
    malformed(&q, "too many snapshots");
}

#[test]
fn header_extensions_must_stay_in_the_first_cluster() {
    // A length running past the cluster.
    let mut q = Q::v3();
    q.extensions = vec![(0x1111_1111, vec![0u8; 8])];
    patch32(&mut q, 112 + 4, 65536);
    malformed(&q, "past the first cluster");
    // An area too short for the next 8-byte extension header (it ends at an
    // unaligned backing file name).
    let mut q = Q::v3();
    patch64(&mut q, 8, 116);
    patch32(&mut q, 16, 4);
    patch32(&mut q, 112, 0x2222_2222);
    malformed(&q, "past the first cluster");
    // Extensions exactly filling the cluster, with no end marker: accepted,
    // as QEMU stops at the cluster end.
    let mut q = Q::v3();
    q.extensions = vec![(0x1111_1111, vec![0u8; 65536 - 112 - 8])];
    check(&q).unwrap();
    // The extension area stops where the backing name starts.
    let mut q = Q::v3();
    q.extensions = vec![(EXT_DATA_FILE, b"/x".to_vec())];
    patch64(&mut q, 8, 120);
    patch32(&mut q, 16, 4);
    malformed(&q, "past the first cluster");
}

#[test]
fn truncated_headers_are_malformed() {
    let full = Q::v3().build();
    for len in [
        4,
        8,
        20,
        71,
        72,
        100,
        103,
        104,
        111,
        112,
        200,
        4096,
        65535,
        65536,
        3 * 65536 + 15,
    ] {
        match validate_bytes(&full[..len], DiskFormat::Qcow2) {
            Err(InspectError::Malformed(_)) => {}
            other => panic!("len {len}: {other:?}"),
        }
    }
    let v2 = Q::v2().build();
    for len in [71, 72, 1000] {
        assert!(
            validate_bytes(&v2[..len], DiskFormat::Qcow2).is_err(),
            "len {len}"
        );
    }
    // Extensions cut off by the end of the file.
    let mut q = Q::v3();
    q.extensions = vec![(0x1111_1111, vec![7u8; 512])];
    let b = q.build();
    assert!(matches!(
        crate::qcow2::parse(&mut std::io::Cursor::new(&b[..300]), b.len() as u64, &b[..300]),
        Err(InspectError::Malformed(m)) if m.contains("end of the file")
    ));
}
