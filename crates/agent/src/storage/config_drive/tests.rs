//! Tests of the config drive writer.

use super::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::process::Command;

const UUID: &str = "0b7f9f51-5a4e-4b8e-9a51-3f0c2d6f4e11";

fn network_data() -> Value {
    json!({
        "links": [{
            "id": "tap0",
            "type": "ethernet",
            "ethernet_mac_address": "52:54:00:AB:CD:EF",
            "mtu": 1500
        }],
        "networks": [{
            "id": "network0",
            "type": "ipv4",
            "link": "tap0",
            "ip_address": "10.0.0.5",
            "netmask": "255.255.255.0",
            "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}],
            "network_id": "net-1"
        }],
        "services": [{"type": "dns", "address": "10.0.0.1"}]
    })
}

fn drive() -> ConfigDrive {
    ConfigDrive {
        meta_data: json!({
            "uuid": UUID,
            "name": "web-1",
            "hostname": "wéb-1.ñubis.internal",
            "public_keys": {"laptop": "ssh-ed25519 AAAAC3Nza josé@portátil 🔑"},
        }),
        user_data: Some(b"#cloud-config\nhostname: web-1\n".to_vec()),
        network_data: network_data(),
        vendor_data: json!({}),
    }
}

struct ReadBack {
    boot_label: String,
    root_label: Option<String>,
    files: BTreeMap<String, Vec<u8>>,
    dirs: Vec<String>,
}

fn collect<T: fatfs::ReadWriteSeek>(dir: fatfs::Dir<'_, T>, prefix: &str, out: &mut ReadBack) {
    for entry in dir.iter() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "." || name == ".." {
            continue;
        }
        let path = format!("{prefix}{name}");
        if entry.is_dir() {
            out.dirs.push(path.clone());
            collect(entry.to_dir(), &format!("{path}/"), out);
        } else {
            let mut data = Vec::new();
            entry.to_file().read_to_end(&mut data).unwrap();
            out.files.insert(path, data);
        }
    }
}

fn read_back(path: &Path) -> ReadBack {
    let file = std::fs::File::open(path).unwrap();
    let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
    let mut out = ReadBack {
        boot_label: fs.volume_label(),
        root_label: fs.read_volume_label_from_root_dir().unwrap(),
        files: BTreeMap::new(),
        dirs: Vec::new(),
    };
    collect(fs.root_dir(), "", &mut out);
    out
}

fn write_temp(drive: &ConfigDrive, flavor: DriveFlavor) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.img");
    write(&path, drive, flavor).unwrap();
    (dir, path)
}

/// Runs a tool if it is installed; `None` (after a note) when it is not.
/// `make test` installs every tool used here (blkid: util-linux, fsck.vfat:
/// dosfstools, mtype/mdir: mtools), so under CI a missing one is a failure,
/// never a silently skipped check.
fn run(program: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(program).args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{program} is required in CI (scripts/install-deps.sh installs it)"
            );
            eprintln!("note: {program} not installed: check skipped");
            None
        }
        Err(e) => panic!("running {program}: {e}"),
    }
}

fn blkid_export(path: &Path) -> Option<BTreeMap<String, String>> {
    let out = run("blkid", &["-p", "-o", "export", path.to_str().unwrap()])?;
    assert!(out.status.success(), "blkid -p failed: {out:?}");
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn config_drive2_reads_back_with_fatfs() {
    let drive = drive();
    let (_dir, path) = write_temp(&drive, DriveFlavor::ConfigDrive2);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), MIN_SIZE);
    let back = read_back(&path);
    assert_eq!(back.boot_label, "config-2");
    assert_eq!(back.root_label.as_deref(), Some("config-2"));
    // Case preserved (long names), both versions complete.
    assert_eq!(
        back.dirs,
        ["openstack", "openstack/2012-08-10", "openstack/latest"]
    );
    let meta = serde_json::to_vec(&drive.meta_data).unwrap();
    let net = serde_json::to_vec(&drive.network_data).unwrap();
    let mut expected = BTreeMap::new();
    for version in ["2012-08-10", "latest"] {
        let dir = format!("openstack/{version}");
        expected.insert(format!("{dir}/meta_data.json"), meta.clone());
        expected.insert(format!("{dir}/user_data"), drive.user_data.clone().unwrap());
        expected.insert(format!("{dir}/vendor_data.json"), b"{}".to_vec());
        expected.insert(format!("{dir}/network_data.json"), net.clone());
    }
    assert_eq!(back.files, expected);
    // Unicode survives the JSON round trip.
    let parsed: Value =
        serde_json::from_slice(&back.files["openstack/latest/meta_data.json"]).unwrap();
    assert_eq!(parsed["hostname"], "wéb-1.ñubis.internal");
    assert_eq!(
        parsed["public_keys"]["laptop"],
        "ssh-ed25519 AAAAC3Nza josé@portátil 🔑"
    );
}

#[test]
fn optional_files_are_omitted() {
    let drive = ConfigDrive {
        meta_data: json!({"uuid": UUID}),
        user_data: None,
        network_data: Value::Null,
        vendor_data: Value::Null,
    };
    let (_dir, path) = write_temp(&drive, DriveFlavor::ConfigDrive2);
    let back = read_back(&path);
    let names: Vec<&str> = back.files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "openstack/2012-08-10/meta_data.json",
            "openstack/2012-08-10/vendor_data.json",
            "openstack/latest/meta_data.json",
            "openstack/latest/vendor_data.json",
        ]
    );
    assert_eq!(back.files["openstack/latest/vendor_data.json"], b"{}");

    let (_dir, path) = write_temp(&drive, DriveFlavor::NoCloud);
    let back = read_back(&path);
    let names: Vec<&str> = back.files.keys().map(String::as_str).collect();
    // NoCloud needs user-data even when empty.
    assert_eq!(names, ["meta-data", "user-data"]);
    assert_eq!(back.files["user-data"], b"");
    assert_eq!(
        back.files["meta-data"],
        format!("instance-id: \"{UUID}\"\n").as_bytes()
    );
}

#[test]
fn nocloud_reads_back_with_fatfs() {
    let mut drive = drive();
    drive.vendor_data = json!({"cloud-init": "#cloud-config\npackages: [htop]\n"});
    let (_dir, path) = write_temp(&drive, DriveFlavor::NoCloud);
    let back = read_back(&path);
    assert_eq!(back.boot_label, "cidata");
    assert_eq!(back.root_label.as_deref(), Some("cidata"));
    assert!(back.dirs.is_empty());
    let names: Vec<&str> = back.files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["meta-data", "network-config", "user-data", "vendor-data"]
    );
    assert_eq!(
        String::from_utf8(back.files["meta-data"].clone()).unwrap(),
        format!(
            "instance-id: \"{UUID}\"\nlocal-hostname: \"wéb-1.ñubis.internal\"\n\
             public-keys:\n  - \"ssh-ed25519 AAAAC3Nza josé@portátil 🔑\"\n"
        )
    );
    assert_eq!(back.files["user-data"], drive.user_data.unwrap());
    assert_eq!(
        back.files["vendor-data"],
        b"#cloud-config\npackages: [htop]\n"
    );
    let config: Value = serde_json::from_slice(&back.files["network-config"]).unwrap();
    assert_eq!(
        config,
        json!({
            "version": 2,
            "ethernets": {
                "tap0": {
                    "match": {"macaddress": "52:54:00:ab:cd:ef"},
                    "mtu": 1500,
                    "addresses": ["10.0.0.5/24"],
                    "routes": [{"to": "0.0.0.0/0", "via": "10.0.0.1"}],
                    "nameservers": {"addresses": ["10.0.0.1"]}
                }
            }
        })
    );
}

#[test]
fn blkid_reports_vfat_and_label() {
    for flavor in [DriveFlavor::ConfigDrive2, DriveFlavor::NoCloud] {
        let (_dir, path) = write_temp(&drive(), flavor);
        let Some(tags) = blkid_export(&path) else {
            return;
        };
        assert_eq!(
            tags.get("TYPE").map(String::as_str),
            Some("vfat"),
            "{tags:?}"
        );
        assert_eq!(
            tags.get("LABEL").map(String::as_str),
            Some(flavor.label()),
            "{tags:?}"
        );
        // Boot sector and root directory agree.
        assert_eq!(
            tags.get("LABEL_FATBOOT").map(String::as_str),
            Some(flavor.label()),
            "{tags:?}"
        );
        // What cloud-init runs (through the cache-less form).
        let out = run(
            "blkid",
            &[
                "-c",
                "/dev/null",
                "-o",
                "value",
                "-s",
                "LABEL",
                path.to_str().unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}\n", flavor.label())
        );
    }
}

#[test]
fn fsck_and_mtools_accept_the_image() {
    let (_dir, nocloud) = write_temp(&drive(), DriveFlavor::NoCloud);
    let (_dir, path) = write_temp(&drive(), DriveFlavor::ConfigDrive2);
    let image = path.to_str().unwrap();
    for image in [image, nocloud.to_str().unwrap()] {
        if let Some(out) = run("fsck.vfat", &["-n", image]) {
            // Exit status 0: no problem found (subdirectories' `.` and
            // `..` in place, see fix_dot_entries).
            assert!(out.status.success(), "fsck.vfat: {out:?}");
        }
    }
    if let Some(out) = run("mtype", &["-i", image, "::openstack/latest/user_data"]) {
        assert!(out.status.success(), "mtype: {out:?}");
        assert_eq!(out.stdout, drive().user_data.unwrap());
    }
    if let Some(out) = run("mdir", &["-i", image, "-b", "::openstack"]) {
        assert!(out.status.success(), "mdir: {out:?}");
        let listing = String::from_utf8(out.stdout).unwrap();
        assert!(listing.contains("::/openstack/latest/"), "{listing}");
        assert!(listing.contains("::/openstack/2012-08-10/"), "{listing}");
    }
    if let Some(out) = run("mdir", &["-i", image, "::openstack/latest"]) {
        let listing = String::from_utf8(out.stdout).unwrap();
        assert!(listing.contains("1980-01-01"), "{listing}");
        assert!(listing.contains("meta_data.json"), "{listing}");
    }
}

#[test]
fn dot_entries_lead_every_subdirectory() {
    let files = vec![
        ("a/b/c/deep.txt".to_string(), b"deep".to_vec()),
        ("a/b/other_long_name.json".to_string(), b"{}".to_vec()),
        ("a/top".to_string(), Vec::new()),
    ];
    let image = build_image("config-2", &files).unwrap();
    let layout = FatLayout::read(&image).unwrap();
    let root = &image[layout.root_start..layout.root_start + layout.root_len];
    let mut pending = subdirectories(root);
    let mut seen = 0;
    while let Some(dir) = pending.pop() {
        seen += 1;
        let entries = &image[layout.cluster(dir).unwrap()];
        assert_eq!(&entries[..11], DOT);
        assert_eq!(&entries[DIR_ENTRY..DIR_ENTRY + 11], DOTDOT);
        pending.extend(subdirectories(entries));
    }
    assert_eq!(seen, 3);
    // A directory not laid out as fatfs 0.3 does is refused, not mangled.
    let mut odd = vec![0u8; 4 * DIR_ENTRY];
    odd[0] = b'X';
    assert!(fix_dots(&mut odd).is_err());
    assert!(fix_dots(&mut [0u8; 8]).is_err());
}

#[test]
fn user_data_of_64_kib_fits_and_large_content_grows_the_image() {
    let mut drive = drive();
    let user_data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    drive.user_data = Some(user_data.clone());
    let (_dir, path) = write_temp(&drive, DriveFlavor::ConfigDrive2);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), MIN_SIZE);
    assert_eq!(
        read_back(&path).files["openstack/latest/user_data"],
        user_data
    );

    // Twice 5 MiB (two versions) needs a bigger image.
    let user_data: Vec<u8> = (0..5 << 20).map(|i| (i % 253) as u8).collect();
    drive.user_data = Some(user_data.clone());
    let (_dir, path) = write_temp(&drive, DriveFlavor::ConfigDrive2);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 10 << 20 && size <= MAX_SIZE, "{size}");
    let back = read_back(&path);
    assert_eq!(back.files["openstack/latest/user_data"], user_data);
    assert_eq!(back.files["openstack/2012-08-10/user_data"], user_data);
    if let Some(out) = run("fsck.vfat", &["-n", path.to_str().unwrap()]) {
        assert!(out.status.success(), "fsck.vfat: {out:?}");
    }
}

#[test]
fn content_over_the_limit_is_an_error_and_leaves_nothing() {
    let mut drive = drive();
    drive.user_data = Some(vec![0; 40 << 20]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.img");
    let err = write(&path, &drive, DriveFlavor::ConfigDrive2).unwrap_err();
    assert!(format!("{err:#}").contains("64 MiB"), "{err:#}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn every_image_size_formats() {
    // fatfs picks FAT12/16 and cluster sizes by size; none may fail.
    let files = vec![(
        "openstack/latest/meta_data.json".to_string(),
        b"{}".to_vec(),
    )];
    for mib in MIN_SIZE / MIB..=MAX_SIZE / MIB {
        let mut image = vec![0u8; (mib * MIB) as usize];
        format_image(&mut image, "config-2", 1).unwrap_or_else(|e| panic!("{mib} MiB: {e:#}"));
        let fs =
            fatfs::FileSystem::new(Cursor::new(&mut image[..]), fatfs::FsOptions::new()).unwrap();
        assert_ne!(fs.fat_type(), fatfs::FatType::Fat32, "{mib} MiB");
        assert_eq!(
            fs.read_volume_label_from_root_dir().unwrap().as_deref(),
            Some("config-2")
        );
    }
    assert_eq!(image_size(&files).unwrap(), MIN_SIZE);
}

#[test]
fn replaces_atomically_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.img");
    std::fs::write(&path, b"old").unwrap();
    write(&path, &drive(), DriveFlavor::ConfigDrive2).unwrap();
    let first = std::fs::read(&path).unwrap();
    write(&path, &drive(), DriveFlavor::ConfigDrive2).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), first);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["config.img"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Different content, different volume id.
    let mut other = drive();
    other.meta_data["uuid"] = json!("another");
    write(&path, &other, DriveFlavor::ConfigDrive2).unwrap();
    assert_ne!(std::fs::read(&path).unwrap()[39..43], first[39..43]);
}

#[test]
fn write_into_a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent/config.img");
    let err = write(&path, &drive(), DriveFlavor::NoCloud).unwrap_err();
    assert!(format!("{err:#}").contains("config.tmp"), "{err:#}");
}

#[test]
fn bad_metadata_is_an_error() {
    let cases = [
        json!(null),
        json!([]),
        json!({}),
        json!({"uuid": 7}),
        json!({"uuid": ""}),
        json!({"uuid": UUID, "hostname": 3}),
        json!({"uuid": UUID, "public_keys": 3}),
        json!({"uuid": UUID, "public_keys": {"a": 3}}),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.img");
    for (i, meta_data) in cases.into_iter().enumerate() {
        let drive = ConfigDrive {
            meta_data,
            ..drive()
        };
        let nocloud = write(&path, &drive, DriveFlavor::NoCloud);
        assert!(nocloud.is_err(), "case {i}");
        let config2 = write(&path, &drive, DriveFlavor::ConfigDrive2);
        // ConfigDrive2 passes hostname and keys through untouched.
        assert_eq!(config2.is_err(), i < 5, "case {i}");
    }
}

#[test]
fn odd_inputs_never_panic() {
    let values = [
        json!(null),
        json!(true),
        json!(1.5e300),
        json!("text"),
        json!([1, [2, {"a": null}]]),
        json!({}),
        json!({"links": 1}),
        json!({"links": [1]}),
        json!({"links": [{"id": 1}]}),
        json!({"links": [{"type": "bond"}]}),
        json!({"links": [{"type": "vlan", "vlan_id": 99999}]}),
        json!({"links": [{"type": "vlan", "vlan_id": 5, "vlan_link": "nope"}]}),
        json!({"links": [{"id": "a"}, {"id": "a"}]}),
        json!({"links": [{"id": "a", "mtu": "x"}]}),
        json!({"networks": [{"link": "x", "type": "ipv4"}]}),
        json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv4"}]}),
        json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv4",
            "ip_address": "10.0.0.1", "netmask": "255.0.255.0"}]}),
        json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv4",
            "ip_address": "10.0.0.1/99"}]}),
        json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv6",
            "ip_address": "fe80::1", "netmask": "255.255.255.0"}]}),
        json!({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv4",
            "ip_address": "10.0.0.1", "netmask": "8", "routes": [{"network": "x"}]}]}),
        json!({"services": [{"type": "dns"}], "links": [{}]}),
        json!({"links": [{"id": "\u{2028}\u{85}\"\\\n"}]}),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.img");
    for network_data in &values {
        for vendor_data in &values {
            let drive = ConfigDrive {
                network_data: network_data.clone(),
                vendor_data: vendor_data.clone(),
                ..drive()
            };
            for flavor in [DriveFlavor::ConfigDrive2, DriveFlavor::NoCloud] {
                let _ = write(&path, &drive, flavor);
            }
        }
    }
}

#[test]
fn network_config_covers_vlans_ipv6_and_dhcp() {
    let network_data = json!({
        "links": [
            {"id": "eth-a", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
            {"id": "vl", "type": "vlan", "vlan_id": 42, "vlan_link": "eth-a",
             "vlan_mac_address": "52:54:00:00:00:02"},
            {"type": "ovs", "ethernet_mac_address": "52:54:00:00:00:03"}
        ],
        "networks": [
            {"link": "eth-a", "type": "ipv4_dhcp"},
            {"link": "eth-a", "type": "ipv6", "ip_address": "2001:db8::5",
             "netmask": "ffff:ffff:ffff:ffff::",
             "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}]},
            {"link": "vl", "type": "ipv4", "ip_address": "192.168.5.9/28",
             "dns_nameservers": ["192.168.5.1"], "dns_search": ["corp.example"]},
            {"link": "", "type": "ipv6_slaac"}
        ],
        "services": [{"type": "dns", "address": "9.9.9.9"}, {"type": "ntp", "address": "x"}]
    });
    let config = network_config_v2(&network_data).unwrap().unwrap();
    assert_eq!(
        config,
        json!({
            "version": 2,
            "ethernets": {
                "eth-a": {
                    "match": {"macaddress": "52:54:00:00:00:01"},
                    "dhcp4": true,
                    "addresses": ["2001:db8::5/64"],
                    "routes": [{"to": "::/0", "via": "2001:db8::1"}],
                    "nameservers": {"addresses": ["9.9.9.9"]}
                },
                "eth2": {
                    "match": {"macaddress": "52:54:00:00:00:03"},
                    "accept-ra": true,
                    "nameservers": {"addresses": ["9.9.9.9"]}
                }
            },
            "vlans": {
                "vl": {
                    "id": 42,
                    "link": "eth-a",
                    "macaddress": "52:54:00:00:00:02",
                    "addresses": ["192.168.5.9/28"],
                    "nameservers": {
                        "addresses": ["192.168.5.1", "9.9.9.9"],
                        "search": ["corp.example"]
                    }
                }
            }
        })
    );
    assert_eq!(network_config_v2(&json!({})).unwrap(), None);
    assert_eq!(
        network_config_v2(&json!({"links": [], "services": []})).unwrap(),
        None
    );
    let err = network_config_v2(&json!({"links": [{"id": "b", "type": "bond"}]})).unwrap_err();
    assert!(format!("{err:#}").contains("bond"), "{err:#}");
}

#[test]
fn yaml_scalars_escape_what_yaml_would_misread() {
    assert_eq!(yaml_string("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    assert_eq!(
        yaml_string("x\u{2028}y\u{85}z\u{7f}"),
        r#""x\u2028y\u0085z\u007F""#
    );
    assert_eq!(yaml_string("héllo 🔑"), "\"héllo 🔑\"");
    // Still JSON meaning the same.
    let back: String = serde_json::from_str(&yaml_string("x\u{2028}\u{feff}")).unwrap();
    assert_eq!(back, "x\u{2028}\u{feff}");
}

#[test]
fn prefix_lengths() {
    assert_eq!(
        cidr("10.1.2.3", Some("255.255.0.0")).unwrap(),
        "10.1.2.3/16"
    );
    assert_eq!(cidr("10.1.2.3", Some("0.0.0.0")).unwrap(), "10.1.2.3/0");
    assert_eq!(cidr("10.1.2.3", None).unwrap(), "10.1.2.3/32");
    assert_eq!(
        cidr("10.1.2.3", Some("255.255.255.255")).unwrap(),
        "10.1.2.3/32"
    );
    assert_eq!(cidr("10.1.2.3", Some("24")).unwrap(), "10.1.2.3/24");
    assert_eq!(
        cidr("2001:db8::1", Some("ffff:ffff::")).unwrap(),
        "2001:db8::1/32"
    );
    assert_eq!(cidr("2001:db8::1", None).unwrap(), "2001:db8::1/128");
    assert!(cidr("10.1.2.3", Some("255.0.255.0")).is_err());
    assert!(cidr("10.1.2.3", Some("33")).is_err());
    assert!(cidr("10.1.2.3", Some("ffff::")).is_err());
    assert!(cidr("nope", None).is_err());
}
