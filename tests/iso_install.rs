//! Installing an OS from an ISO, end to end: the test builds a bootable ISO
//! (GRUB from `grub-mkrescue`, the tiny guest's kernel, and an initramfs
//! whose /init is an "installer" that writes a boot sector to the blank disk
//! and powers off). Uploaded as `format: iso`, it boots a server with a blank
//! 1 GiB disk from its CD-ROM drive; after `nubis server eject` the server
//! boots from its disk, where the boot sector prints a marker on the serial
//! console.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::cloud::Cloud;
use support::netns::run_in_netns;
use support::qemu_pids;

/// Generous: guests boot in seconds under TCG, but CI machines are shared.
const BOOT: Duration = Duration::from_secs(180);

/// What the installed "OS" prints when the BIOS boots it from the disk.
const MARKER: &str = "nubis-installed-os: booted from disk";

/// A 512-byte MBR boot sector: 16-bit code that writes [`MARKER`] to COM1
/// and halts. This is what the installer puts on the disk.
fn boot_sector() -> Vec<u8> {
    #[rustfmt::skip]
    let mut code = vec![
        0xFA,             // cli
        0xFC,             // cld
        0x31, 0xC0,       // xor ax, ax
        0x8E, 0xD8,       // mov ds, ax
        0xBA, 0xFB, 0x03, // mov dx, 0x3fb   (COM1 line control)
        0xB0, 0x03,       // mov al, 3       (8N1, divisor latch off)
        0xEE,             // out dx, al
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8   (COM1 data)
        0xBE, 0x00, 0x00, // mov si, message (patched below)
        0xAC,             // next: lodsb
        0x84, 0xC0,       // test al, al
        0x74, 0x03,       // jz halt
        0xEE,             // out dx, al
        0xEB, 0xF8,       // jmp next
        0xF4,             // halt: hlt
        0xEB, 0xFD,       // jmp halt
    ];
    let message_at = 0x7C00 + code.len() as u16;
    code[16..18].copy_from_slice(&message_at.to_le_bytes());
    let mut sector = vec![0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    let message = format!("{MARKER}\r\n\0");
    sector[code.len()..code.len() + message.len()].copy_from_slice(message.as_bytes());
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// The installer: the tiny guest's modules for virtio, then the boot sector
/// onto the blank virtio disk. On a 1 GiB disk (2097152 sectors) it then
/// powers off; on a 2 GiB one it reboots "into the installed system", as
/// real installers do (which boots it only once the ISO is out).
const INSTALLER_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
say() { echo "$*" > /dev/console; }
say "nubis-installer: started"
while read -r ko; do
    [ -n "$ko" ] && insmod "/lib/modules/$ko" 2>/dev/null
done < /etc/nubis/modules
target=
then=
i=0
while [ -z "$target" ] && [ $i -lt 100 ]; do
    for d in /sys/block/vd*; do
        [ -e "$d/size" ] || continue
        case "$(cat "$d/size")" in
            2097152) target=/dev/${d##*/}; then=poweroff ;;
            4194304) target=/dev/${d##*/}; then=reboot ;;
        esac
    done
    [ -n "$target" ] || sleep 0.1
    i=$((i + 1))
done
if [ -z "$target" ]; then
    say "nubis-installer: no blank 1 or 2 GiB disk found"
    poweroff -f
fi
dd if=/bootsector.bin of="$target" bs=512 count=1 conv=fsync 2>/dev/null
sync
say "nubis-installer: installed to $target, $then"
$then -f
"#;

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install it: scripts/install-deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the installer ISO in `dir` and returns its path.
fn build_installer_iso(dir: &Path) -> PathBuf {
    let tiny = support::tiny_image_dir();
    let root = dir.join("iso-root");
    std::fs::create_dir_all(root.join("boot/grub")).unwrap();

    // The installer's initramfs: the tiny guest's (busybox, modules), then a
    // second, uncompressed cpio whose /init replaces the tiny guest's (the
    // kernel unpacks concatenated archives in order; each must start at a
    // 4-byte boundary, hence the zero padding, which the kernel skips).
    let stage = dir.join("installer-stage");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(stage.join("init"), INSTALLER_INIT).unwrap();
    std::fs::set_permissions(
        stage.join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(stage.join("bootsector.bin"), boot_sector()).unwrap();
    let mut initrd = std::fs::read(tiny.join("initrd.img")).unwrap();
    initrd.resize(initrd.len().next_multiple_of(512), 0);
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(&stage)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cpio (scripts/install-deps.sh installs it)");
    std::io::Write::write_all(cpio.stdin.as_mut().unwrap(), b"init\nbootsector.bin\n").unwrap();
    drop(cpio.stdin.take());
    let out = cpio.wait_with_output().unwrap();
    assert!(out.status.success(), "cpio failed");
    initrd.extend_from_slice(&out.stdout);
    std::fs::write(root.join("boot/installer.img"), initrd).unwrap();
    std::fs::copy(tiny.join("vmlinuz"), root.join("boot/vmlinuz")).unwrap();

    let cmdline = std::fs::read_to_string(tiny.join("cmdline.txt")).unwrap();
    let grub_cfg = format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         set timeout=0\n\
         menuentry \"nubis test installer\" {{\n\
         \techo \"nubis-installer: GRUB loading the kernel\"\n\
         \tlinux /boot/vmlinuz {}\n\
         \tinitrd /boot/installer.img\n\
         }}\n",
        cmdline.trim()
    );
    std::fs::write(root.join("boot/grub/grub.cfg"), grub_cfg).unwrap();
    let iso = dir.join("installer.iso");
    run(Command::new("grub-mkrescue").arg("-o").arg(&iso).arg(&root));
    iso
}

/// A cloud with user alice logged in and the installer ISO (built in
/// `work`) uploaded with the CLI as image `installer`.
async fn cloud_with_installer(work: &std::path::Path) -> Cloud {
    let iso = build_installer_iso(work);
    let mut cloud = Cloud::start().await;
    cloud.register_and_login("alice", "alice-password").await;
    let iso_path = iso.to_string_lossy().into_owned();
    let out = cloud.cli(&[
        "image",
        "create",
        "installer",
        "--format",
        "iso",
        "--file",
        &iso_path,
    ]);
    assert!(
        out.status.success(),
        "nubis image create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cloud
}

/// The command line of the server's (one) QEMU.
fn qemu_cmdline(id: &str) -> String {
    let pids = qemu_pids(id);
    assert_eq!(pids.len(), 1, "one QEMU for {id}: {pids:?}");
    std::fs::read(format!("/proc/{}/cmdline", pids[0]))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn install_from_iso_eject_and_boot_from_disk() {
    run_in_netns("iso", || async {
        let work = tempfile::tempdir().unwrap();
        let cloud = cloud_with_installer(work.path()).await;

        let (id, server) = cloud
            .create_server(json!({
                "name": "inst", "image": "installer",
                "vcpus": 1, "memory_mib": 128, "disk_gib": 1,
            }))
            .await;
        assert_eq!(server["cdrom_attached"], true, "{server}");

        // Firmware boot from the CD: GRUB, then the installer, which writes
        // the disk and powers the guest off.
        cloud
            .wait_console(&id, "nubis-installer: GRUB loading the kernel", BOOT)
            .await;
        let cmdline = qemu_cmdline(&id);
        assert!(
            cmdline.contains("ide-cd,id=cdrom0,drive=cdrom0"),
            "{cmdline}"
        );
        assert!(!cmdline.contains("-kernel"), "firmware boot: {cmdline}");
        assert!(cmdline.contains(r#""driver":"raw""#), "{cmdline}");
        cloud
            .wait_console(&id, "nubis-installer: installed to /dev/vd", BOOT)
            .await;
        cloud.wait_status(&id, "stopped", BOOT).await;
        assert!(qemu_pids(&id).is_empty(), "powered off: no QEMU");

        // Eject (the CLI, as a user would), then start: the disk boots.
        let out = cloud.cli(&["server", "eject", "inst"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("eject"),
            "{out:?}"
        );
        let (s, b) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["cdrom_attached"], false, "{b}");
        // A second eject has nothing to take out.
        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/eject"), None)
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");

        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/start"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        cloud.wait_console(&id, MARKER, BOOT).await;
        let cmdline = qemu_cmdline(&id);
        assert!(
            !cmdline.contains("cdrom0"),
            "no CD-ROM after eject: {cmdline}"
        );
        let log = cloud.console_log(&id).await;
        assert_eq!(
            log.matches("nubis-installer: started").count(),
            1,
            "the installer ran once:\n{log}"
        );
        cloud.wait_status(&id, "running", BOOT).await;

        // Delete ends the VM (the installed "OS" ignores ACPI).
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        support::wait_for("the server to disappear", BOOT, || async {
            let (s, _) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (s == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        assert!(qemu_pids(&id).is_empty(), "no QEMU left");
    });
}

/// Eject while the guest runs: the installer on a 2 GiB disk reboots, and
/// boots itself again as long as the ISO is in the drive; once ejected
/// (QMP `eject`, no restart of QEMU), the next reset boots from the disk.
#[test]
fn live_eject_makes_the_next_reset_boot_from_disk() {
    run_in_netns("iso-live", || async {
        let work = tempfile::tempdir().unwrap();
        let cloud = cloud_with_installer(work.path()).await;
        let (id, _) = cloud
            .create_server(json!({
                "name": "inst", "image": "installer",
                "vcpus": 1, "memory_mib": 128, "disk_gib": 2,
            }))
            .await;
        cloud
            .wait_console(&id, "nubis-installer: installed to /dev/vd", BOOT)
            .await;
        let pids = qemu_pids(&id);
        assert_eq!(pids.len(), 1);
        // The guest reset itself and is back in the installer: CD first.
        support::wait_for("the installer to start again", BOOT, || async {
            let log = cloud.console_log(&id).await;
            (log.matches("nubis-installer: started").count() >= 2).then_some(())
        })
        .await;

        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/eject"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert_eq!(b["cdrom_attached"], false, "{b}");
        cloud.wait_console(&id, MARKER, BOOT).await;
        assert_eq!(qemu_pids(&id), pids, "the same QEMU: ejected live");
        assert!(cloud.log().contains("CD-ROM ejected"), "{}", cloud.log());
        assert_eq!(
            cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await
                .1["status"],
            "running"
        );
    });
}
