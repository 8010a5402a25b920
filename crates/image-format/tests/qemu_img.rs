//! Images made by the real `qemu-img`, checked against our parser. Skipped
//! (with a note) when qemu-img is not installed (Debian: `qemu-utils`), and a
//! case is skipped when this qemu-img build cannot make its image; under CI
//! (`CI` set, `make test` installs qemu-utils) both are failures. Every test
//! asserts that it checked at least one image, so none passes vacuously.

use std::path::{Path, PathBuf};
use std::process::Command;

use nubis_image_format::{inspect, validate, DetectedFormat, DiskFormat, InspectError};

/// The qemu-img binary, or None (and a note on stderr) when it is missing.
fn qemu_img() -> Option<&'static str> {
    let ok = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        // make test installs qemu-utils: in CI these tests must really run.
        assert!(
            std::env::var_os("CI").is_none(),
            "qemu-img is required in CI"
        );
        eprintln!("note: qemu-img not found on PATH; skipping tests with real images");
    }
    ok.then_some("qemu-img")
}

/// Runs `qemu-img create` with `args`; returns false (with a note) when this
/// qemu-img build cannot make the image, so optional features skip cleanly
/// outside CI. Under CI the qemu-img of `make test` (Debian's qemu-utils) must
/// make every image: a failure there fails the test.
/// Tries three times: LUKS key setup times the CPU and sometimes fails on a
/// busy machine ("Unable to get accurate CPU usage").
fn create(qemu: &str, args: &[&str]) -> bool {
    let mut stderr = Vec::new();
    for _ in 0..3 {
        let out = Command::new(qemu)
            .arg("create")
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            return true;
        }
        stderr = out.stderr;
    }
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        std::env::var_os("CI").is_none(),
        "qemu-img create {args:?} failed (required in CI): {stderr}"
    );
    eprintln!("note: qemu-img create {args:?} failed, skipping: {stderr}");
    false
}

/// Fails a test that could make none of its images: it checked nothing.
fn assert_checked(test: &str, checked: usize) {
    assert!(
        checked > 0,
        "{test}: qemu-img could make none of the images, nothing was checked"
    );
}

/// Runs a qemu-img subcommand that must succeed.
fn run(qemu: &str, args: &[&str]) {
    let out = Command::new(qemu).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

#[test]
fn plain_qcow2_is_accepted() {
    let Some(q) = qemu_img() else { return };
    let d = Dir::new();
    let cases: &[(&str, &[&str])] = &[
        ("v3.qcow2", &[]),
        ("v2.qcow2", &["-o", "compat=0.10"]),
        ("small-clusters.qcow2", &["-o", "cluster_size=512"]),
        ("big-clusters.qcow2", &["-o", "cluster_size=2M"]),
        ("lazy.qcow2", &["-o", "lazy_refcounts=on"]),
        ("extl2.qcow2", &["-o", "extended_l2=on"]),
        ("zstd.qcow2", &["-o", "compression_type=zstd"]),
        ("prealloc.qcow2", &["-o", "preallocation=metadata"]),
        ("refcount64.qcow2", &["-o", "refcount_bits=64"]),
        ("bitmap.qcow2", &[]),
        ("snapshot.qcow2", &[]),
    ];
    let mut checked = 0;
    for (name, opts) in cases {
        let p = d.file(name);
        let mut args = vec!["-q", "-f", "qcow2"];
        args.extend_from_slice(opts);
        args.extend([path_str(&p), "64M"]);
        if !create(q, &args) {
            continue;
        }
        // A persistent dirty bitmap (header extension + autoclear bit) and an
        // internal snapshot (snapshot table) are fine.
        if *name == "bitmap.qcow2" {
            run(q, &["bitmap", "--add", path_str(&p), "b0"]);
        }
        if *name == "snapshot.qcow2" {
            run(q, &["snapshot", "-q", "-c", "s1", path_str(&p)]);
        }
        let i = validate(&p, DiskFormat::Qcow2).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(i.format, DetectedFormat::Qcow2, "{name}");
        assert_eq!(i.virtual_size, 64 << 20, "{name}");
        let info = i.qcow2.unwrap();
        assert_eq!(
            info.version,
            if *name == "v2.qcow2" { 2 } else { 3 },
            "{name}"
        );
        // Declared raw, the same file is refused.
        assert!(
            matches!(
                validate(&p, DiskFormat::Raw),
                Err(InspectError::Mismatch { .. })
            ),
            "{name}"
        );
        checked += 1;
    }
    assert_checked("plain qcow2", checked);
}

#[test]
fn qcow2_with_backing_file_is_refused() {
    let Some(q) = qemu_img() else { return };
    let d = Dir::new();
    for compat in ["1.1", "0.10"] {
        let p = d.file(&format!("backed-{compat}.qcow2"));
        let opts = format!("compat={compat}");
        assert!(create(
            q,
            &[
                "-q",
                "-f",
                "qcow2",
                "-o",
                &opts,
                "-b",
                "/etc/passwd",
                "-F",
                "raw",
                path_str(&p),
                "1M"
            ]
        ));
        let i = inspect(&p).unwrap();
        let info = i.qcow2.unwrap();
        assert_eq!(info.backing_file.as_deref(), Some("/etc/passwd"));
        assert_eq!(info.backing_format.as_deref(), Some("raw"));
        match validate(&p, DiskFormat::Qcow2) {
            Err(InspectError::BackingFile(n)) => assert_eq!(n, "/etc/passwd"),
            other => panic!("compat {compat}: {other:?}"),
        }
    }
    // A qcow2 backing file, too.
    let base = d.file("base.qcow2");
    let top = d.file("top.qcow2");
    assert!(create(q, &["-q", "-f", "qcow2", path_str(&base), "1M"]));
    assert!(create(
        q,
        &[
            "-q",
            "-f",
            "qcow2",
            "-b",
            path_str(&base),
            "-F",
            "qcow2",
            path_str(&top)
        ]
    ));
    assert!(
        matches!(validate(&top, DiskFormat::Qcow2), Err(InspectError::BackingFile(n)) if n == path_str(&base))
    );
}

#[test]
fn qcow2_with_data_file_is_refused() {
    let Some(q) = qemu_img() else { return };
    let d = Dir::new();
    let mut checked = 0;
    for (name, raw) in [("data.qcow2", false), ("data-raw.qcow2", true)] {
        let p = d.file(name);
        let data = d.file(&format!("{name}.data"));
        let mut opts = format!("data_file={}", path_str(&data));
        if raw {
            opts.push_str(",data_file_raw=on");
        }
        if !create(q, &["-q", "-f", "qcow2", "-o", &opts, path_str(&p), "1M"]) {
            continue;
        }
        match validate(&p, DiskFormat::Qcow2) {
            Err(InspectError::DataFile(n)) => assert_eq!(n, path_str(&data), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        checked += 1;
    }
    assert_checked("qcow2 with a data file", checked);
}

#[test]
fn encrypted_images_are_refused() {
    let Some(q) = qemu_img() else { return };
    let d = Dir::new();
    let secret = "secret,id=sec0,data=hunter2";
    let mut checked = 0;
    let p = d.file("enc.qcow2");
    if create(
        q,
        &[
            "-q",
            "--object",
            secret,
            "-f",
            "qcow2",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
            path_str(&p),
            "1M",
        ],
    ) {
        assert!(matches!(
            validate(&p, DiskFormat::Qcow2),
            Err(InspectError::Encrypted)
        ));
        checked += 1;
    }
    let p = d.file("disk.luks");
    if create(
        q,
        &[
            "-q",
            "--object",
            secret,
            "-f",
            "luks",
            "-o",
            "key-secret=sec0,iter-time=10",
            path_str(&p),
            "1M",
        ],
    ) {
        assert_eq!(inspect(&p).unwrap().format, DetectedFormat::Luks);
        assert!(matches!(
            validate(&p, DiskFormat::Raw),
            Err(InspectError::UnsupportedFormat(DetectedFormat::Luks))
        ));
        checked += 1;
    }
    assert_checked("encrypted images", checked);
}

#[test]
fn other_formats_are_detected_and_refused() {
    let Some(q) = qemu_img() else { return };
    let d = Dir::new();
    let cases: &[(&str, &[&str], DetectedFormat)] = &[
        ("vmdk", &[], DetectedFormat::Vmdk),
        (
            "vmdk",
            &["-o", "subformat=monolithicFlat"],
            DetectedFormat::Vmdk,
        ),
        (
            "vmdk",
            &["-o", "subformat=streamOptimized"],
            DetectedFormat::Vmdk,
        ),
        (
            "vmdk",
            &["-o", "subformat=twoGbMaxExtentSparse"],
            DetectedFormat::Vmdk,
        ),
        ("vdi", &[], DetectedFormat::Vdi),
        ("vdi", &["-o", "static=on"], DetectedFormat::Vdi),
        ("vpc", &[], DetectedFormat::Vhd),
        ("vpc", &["-o", "subformat=fixed"], DetectedFormat::Vhd),
        ("vhdx", &[], DetectedFormat::Vhdx),
        ("qed", &[], DetectedFormat::Qed),
        ("qcow", &[], DetectedFormat::Other("qcow")),
        ("parallels", &[], DetectedFormat::Other("parallels")),
    ];
    let mut checked = 0;
    for (n, (fmt, opts, want)) in cases.iter().enumerate() {
        let p = d.file(&format!("img{n}.{fmt}"));
        let mut args = vec!["-q", "-f", fmt];
        args.extend_from_slice(opts);
        args.extend([path_str(&p), "4M"]);
        if !create(q, &args) {
            continue;
        }
        assert_eq!(inspect(&p).unwrap().format, *want, "{fmt} {opts:?}");
        for declared in DiskFormat::ALL {
            match validate(&p, declared) {
                Err(InspectError::UnsupportedFormat(f)) => assert_eq!(f, *want),
                other => panic!("{fmt} {opts:?} declared {declared}: {other:?}"),
            }
        }
        checked += 1;
    }
    assert_checked("other formats", checked);
}

#[test]
fn raw_from_qemu_img_is_accepted() {
    let Some(q) = qemu_img() else { return };
    let d = Dir::new();
    let p = d.file("disk.raw");
    assert!(create(q, &["-q", "-f", "raw", path_str(&p), "8M"]));
    let i = validate(&p, DiskFormat::Raw).unwrap();
    assert_eq!((i.format, i.virtual_size), (DetectedFormat::Raw, 8 << 20));
    // A qcow2 converted to raw is raw, and back again is qcow2.
    let qc = d.file("disk.qcow2");
    let st = Command::new(q)
        .args([
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            "qcow2",
            path_str(&p),
            path_str(&qc),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        validate(&qc, DiskFormat::Qcow2).unwrap().virtual_size,
        8 << 20
    );
}

/// The format QEMU's own probe picks for `path`, or None if it cannot open it.
fn qemu_probe(qemu: &str, path: &Path) -> Option<String> {
    let out = Command::new(qemu)
        .args(["info", "--output=json", path_str(path)])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    let rest = json.split("\"format\": \"").nth(1)?;
    Some(rest.split('"').next()?.to_owned())
}

#[test]
fn nothing_qemu_would_probe_as_another_format_passes_as_raw() {
    // The attack: upload bytes declared raw that QEMU, if it ever probed,
    // would open as something else. Our detection must be at least as eager.
    let Some(q) = qemu_img() else { return };
    let d = Dir::new();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for fmt in [
        "qcow2",
        "vmdk",
        "vdi",
        "vpc",
        "vhdx",
        "qed",
        "qcow",
        "parallels",
    ] {
        let p = d.file(&format!("seed.{fmt}"));
        if create(q, &["-q", "-f", fmt, path_str(&p), "1M"]) {
            let mut b = std::fs::read(&p).unwrap();
            b.truncate(256 << 10);
            seeds.push(b);
        }
    }
    seeds.push(b"# comment\n\nversion=1\nRW 8 FLAT \"/etc/shadow\" 0\n".to_vec());
    seeds.push(b"  \r\nversion=2\r\nRW 8 FLAT \"/etc/shadow\" 0\n".to_vec());
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let p = d.file("probe.img");
    let mut checked = 0;
    for seed in &seeds {
        for round in 0..12 {
            let mut b = seed.clone();
            if round > 0 {
                // Flip one byte among the first 128, where the magic lives.
                let i = (next() % 128) as usize % b.len();
                b[i] ^= 1 << (next() % 8);
            }
            std::fs::write(&p, &b).unwrap();
            // inspect() fails only on qcow2 headers it cannot parse: not raw.
            let ours = inspect(&p).map(|i| i.format);
            if let Some(theirs) = qemu_probe(q, &p) {
                checked += 1;
                if let Ok(ours @ (DetectedFormat::Raw | DetectedFormat::Iso)) = ours {
                    assert_eq!(
                        theirs,
                        "raw",
                        "we said {ours}, QEMU probed {theirs}: seed {:?}",
                        &b[..16.min(b.len())]
                    );
                }
            }
        }
    }
    assert!(checked > 0);
}
