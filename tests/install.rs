//! `make install` into a staging directory (DESTDIR): the binary, the two
//! systemd units and the data directory land where expected, and the units
//! pass `systemd-analyze verify` (required under CI=true).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const UNITS: [&str; 2] = ["nubis.service", "nubis-agent.service"];

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `systemd-analyze verify` on `units`; returns its complaints (empty
/// when the units are clean), or `None` without systemd-analyze.
fn verify(units: &[std::path::PathBuf]) -> Option<String> {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .ok()?;
    let mut complaints = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        complaints.push_str(&format!("\nexit status {}", out.status));
    }
    Some(complaints.trim().to_owned())
}

#[test]
fn make_install_stages_the_binary_units_and_data_dir() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::Builder::new()
        .prefix("nubis-install-")
        .tempdir()
        .unwrap();
    let dest = root.path().join("stage");
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(repo)
        .arg("install")
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("NUBIS_BIN={}", env!("CARGO_BIN_EXE_nubis")))
        .output()
        .expect("running make");
    assert!(
        out.status.success(),
        "make install failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let bin = dest.join("usr/local/bin/nubis");
    assert_eq!(mode(&bin), 0o755);
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(version.status.success(), "the installed binary runs");
    assert_eq!(mode(&dest.join("var/lib/nubis")), 0o755);
    let unit_dir = dest.join("etc/systemd/system");
    for (unit, command) in UNITS.iter().zip(["up", "agent"]) {
        let path = unit_dir.join(unit);
        assert_eq!(mode(&path), 0o644, "{unit}");
        let text = std::fs::read_to_string(&path).unwrap();
        for line in [
            format!("ExecStart=/usr/local/bin/nubis {command} --data-dir /var/lib/nubis"),
            "Restart=on-failure".to_owned(),
            // QEMU guests (-daemonize'd, in the unit's cgroup) survive restarts.
            "KillMode=process".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
    }
    // Nothing else was installed.
    let mut files: Vec<String> = walk(&dest);
    files.sort();
    assert_eq!(
        files,
        [
            "etc/systemd/system/nubis-agent.service",
            "etc/systemd/system/nubis.service",
            "usr/local/bin/nubis",
            "var/lib/nubis/",
        ]
    );

    // `systemd-analyze verify` wants ExecStart's program to exist: point
    // copies of the units at the staged binary.
    let check_dir = root.path().join("verify");
    std::fs::create_dir(&check_dir).unwrap();
    let copies: Vec<_> = UNITS
        .iter()
        .map(|unit| {
            let text = std::fs::read_to_string(unit_dir.join(unit)).unwrap();
            let copy = check_dir.join(unit);
            std::fs::write(
                &copy,
                text.replace("/usr/local/bin/nubis", &bin.display().to_string()),
            )
            .unwrap();
            copy
        })
        .collect();
    match verify(&copies) {
        Some(complaints) => {
            assert_eq!(complaints, "", "systemd-analyze verify complains");
            // Positive control: a broken unit draws complaints.
            let broken = check_dir.join("broken.service");
            let text = std::fs::read_to_string(&copies[0]).unwrap();
            std::fs::write(
                &broken,
                text.replace("Restart=on-failure", "Restart=sometimes"),
            )
            .unwrap();
            let complaints = verify(&[broken]).unwrap();
            assert!(complaints.contains("sometimes"), "{complaints}");
        }
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "systemd-analyze is missing (Debian package systemd)"
            );
            eprintln!("note: systemd-analyze not found; units not verified");
        }
    }
}

/// Every file under `dir` (and every empty directory, with a trailing `/`),
/// relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let mut empty = true;
        for entry in std::fs::read_dir(&d).unwrap() {
            empty = false;
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
        if empty {
            found.push(format!("{}/", d.strip_prefix(dir).unwrap().display()));
        }
    }
    found
}
