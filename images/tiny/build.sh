#!/bin/bash
# Build the Nubis tiny test guest (CirrOS-like) from Debian 12 packages only.
#
#   images/tiny/build.sh OUTDIR
#
# Must run as root on Debian 12. Produces in OUTDIR:
#   vmlinuz      Debian kernel (bzImage), for QEMU -kernel
#   vmlinux      the same kernel, uncompressed PVH ELF: QEMU -kernel boots it ~2x faster under TCG
#   initrd.img   gzip'd newc cpio initramfs (busybox, dropbear and dbclient, iperf3, a few
#                modules, /init, nubis-cloud-init)
#   disk.qcow2   16 MiB zeroed qcow2 root disk (holds the boot counter in sector 0)
#   cmdline.txt  kernel command line for QEMU -append
# Downloaded .deb files and the pruned kernel tree are cached in OUTDIR/cache, so
# a rerun is fast and needs no network. The initramfs is built reproducibly and
# outputs are only replaced when their content changes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "build.sh: error: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
[ "$(id -u)" -eq 0 ] || die "must run as root"

mkdir -p "$1"
out=$(cd "$1" && pwd)
cache=$out/cache
mkdir -p "$cache"

# Serialise concurrent builds into the same OUTDIR.
exec 9>"$out/.build.lock"
flock 9

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=600 -o APT::Sandbox::User=root)

# ---------------------------------------------------------------- host packages
pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

need=()
for p in busybox-static cpio dropbear-bin iperf3 qemu-utils gzip xz-utils; do
    pkg_installed "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    if ! apt-get "${apt_opts[@]}" install -y --no-install-recommends "${need[@]}"; then
        apt-get "${apt_opts[@]}" update
        apt-get "${apt_opts[@]}" install -y --no-install-recommends "${need[@]}"
    fi
fi

# ---------------------------------------------------------------- kernel package
# NUBIS_TINY_KERNEL_PKG may name the package explicitly (e.g. linux-image-6.1.0-56-amd64).
resolve_kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1
}

kpkg=${NUBIS_TINY_KERNEL_PKG:-}
if [ -z "$kpkg" ]; then
    kpkg=$(resolve_kernel_pkg)
fi
if [ -z "$kpkg" ]; then
    # No package lists? Prefer an already cached kernel (offline rerun), else update.
    cached=$(find "$cache" -maxdepth 1 -name 'linux-image-*-amd64_*_amd64.deb' | sort -V | tail -n 1)
    if [ -n "$cached" ]; then
        kpkg=$(basename "$cached" | cut -d_ -f1)
    else
        apt-get "${apt_opts[@]}" update
        kpkg=$(resolve_kernel_pkg)
    fi
fi
[ -n "$kpkg" ] || die "could not resolve the kernel package from linux-image-amd64"
kver=${kpkg#linux-image-}   # e.g. 6.1.0-56-amd64

deb=$(find "$cache" -maxdepth 1 -name "${kpkg}_*_amd64.deb" | sort -V | tail -n 1)
if [ -z "$deb" ]; then
    log "downloading $kpkg"
    (cd "$cache" && apt-get "${apt_opts[@]}" download "$kpkg")
    deb=$(find "$cache" -maxdepth 1 -name "${kpkg}_*_amd64.deb" | sort -V | tail -n 1)
    [ -n "$deb" ] || die "apt-get download $kpkg produced no .deb"
fi

# ---------------------------------------------------------------- kernel modules
# Modules the guest loads, in any order; dependencies are resolved from the
# modules' own depends= lines and loaded first. Built-in (=y) ones are skipped.
wanted_modules=(
    button evdev        # ACPI power button -> /dev/input/eventN (first: shortest window
                        # in which a system_powerdown would be missed)
    virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
    failover net_failover virtio_net virtio_blk
    virtio-rng          # entropy from -device virtio-rng-pci, if present
    isofs               # config drive (iso9660)
    vfat nls_cp437 nls_ascii nls_utf8   # config drive (vfat): this kernel's FAT
                        # defaults are codepage 437 and iocharset "ascii"
)

# Extract once per .deb and module list; keep only what we need (the full tree is 400 MB).
kdir=$cache/kernel-$kver
stamp="$(basename "$deb") ${wanted_modules[*]}"
if [ ! -f "$kdir/.stamp" ] || [ "$(cat "$kdir/.stamp")" != "$stamp" ]; then
    log "extracting $(basename "$deb")"
    rm -rf "$kdir" "$kdir.tmp"
    mkdir -p "$kdir.tmp/x"
    dpkg -x "$deb" "$kdir.tmp/x"
    mods=$kdir.tmp/x/lib/modules/$kver
    [ -d "$mods" ] || die "no lib/modules/$kver in $deb"
    vmlinuz_src=$kdir.tmp/x/boot/vmlinuz-$kver
    [ -f "$vmlinuz_src" ] || die "no boot/vmlinuz-$kver in $deb"

    # name (with '-' folded to '_') -> path relative to $mods
    declare -A modpath=()
    while IFS= read -r f; do
        n=$(basename "$f" .ko)
        modpath[${n//-/_}]=$f
    done < <(cd "$mods" && find kernel -name '*.ko')
    declare -A builtin=()
    while IFS= read -r f; do
        n=$(basename "$f" .ko)
        builtin[${n//-/_}]=1
    done < "$mods/modules.builtin"

    declare -A seen=()
    order=()
    resolve() {
        local m=${1//-/_} d deps
        [ -z "${seen[$m]:-}" ] || return 0
        seen[$m]=1
        if [ -n "${builtin[$m]:-}" ]; then
            log "module $m is built in"
            return 0
        fi
        [ -n "${modpath[$m]:-}" ] || die "module $m not found in $kpkg"
        deps=$(tr '\0' '\n' < "$mods/${modpath[$m]}" | sed -n 's/^depends=//p' | head -n 1)
        for d in ${deps//,/ }; do
            resolve "$d"
        done
        order+=("$m")
    }
    for m in "${wanted_modules[@]}"; do
        resolve "$m"
    done

    mkdir -p "$kdir.tmp/keep/modules"
    cp "$vmlinuz_src" "$kdir.tmp/keep/vmlinuz"
    : > "$kdir.tmp/keep/modules.list"
    for m in "${order[@]}"; do
        cp "$mods/${modpath[$m]}" "$kdir.tmp/keep/modules/"
        basename "${modpath[$m]}" >> "$kdir.tmp/keep/modules.list"
    done
    mv "$kdir.tmp/keep" "$kdir"
    rm -rf "$kdir.tmp"
    echo "$stamp" > "$kdir/.stamp"
fi

# Replace $2 by $1 only if the content differs (keeps mtimes stable on reruns).
install_if_changed() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        rm -f "$1"
    else
        chmod 0644 "$1"
        mv -f "$1" "$2"
        log "wrote $2"
    fi
}
copy_if_changed() {
    if [ ! -f "$2" ] || ! cmp -s "$1" "$2"; then
        cp "$1" "$2.tmp"
        install_if_changed "$2.tmp" "$2"
    fi
}

copy_if_changed "$kdir/vmlinuz" "$out/vmlinuz"

# vmlinux: the same kernel as an uncompressed ELF with a PVH entry point. QEMU's
# -kernel boots it directly (PVH), skipping the in-guest xz decompression, which
# under TCG takes seconds; a drop-in replacement for vmlinuz, ~2x faster boot.
if [ ! -f "$kdir/vmlinux" ]; then
    # The bzImage payload is an xz stream (CONFIG_KERNEL_XZ); try each xz magic.
    for off in $(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$kdir/vmlinuz" | cut -d: -f1); do
        if { tail -c +$((off + 1)) "$kdir/vmlinuz" || true; } | xz -dc --single-stream > "$kdir/vmlinux.tmp" 2>/dev/null &&
            [ "$(head -c 4 "$kdir/vmlinux.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
            # Drop what follows the ELF (the relocation table appended for the decompressor).
            shoff=$(od -An -t u8 -j 40 -N 8 "$kdir/vmlinux.tmp" | tr -d ' ')
            shentsize=$(od -An -t u2 -j 58 -N 2 "$kdir/vmlinux.tmp" | tr -d ' ')
            shnum=$(od -An -t u2 -j 60 -N 2 "$kdir/vmlinux.tmp" | tr -d ' ')
            truncate -s $((shoff + shentsize * shnum)) "$kdir/vmlinux.tmp"
            mv "$kdir/vmlinux.tmp" "$kdir/vmlinux"
            break
        fi
    done
    rm -f "$kdir/vmlinux.tmp"
    [ -f "$kdir/vmlinux" ] || die "could not extract vmlinux from the bzImage"
fi
copy_if_changed "$kdir/vmlinux" "$out/vmlinux"

# ---------------------------------------------------------------- initramfs
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

(cd "$stage" && mkdir -p bin sbin usr/bin usr/sbin etc dev proc sys tmp run root \
    var/run var/log lib/modules lib/x86_64-linux-gnu lib64 etc/nubis etc/dropbear \
    usr/share/udhcpc usr/share/nubis mnt/config)
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/root"

# The kernel opens /dev/console before running /init, so it must be in the cpio.
mknod -m 0600 "$stage/dev/console" c 5 1
mknod -m 0666 "$stage/dev/null" c 1 3

cp /bin/busybox "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
install -m 0755 "$here/init" "$stage/init"
install -m 0755 "$here/udhcpc.script" "$stage/usr/share/udhcpc/default.script"
install -m 0644 "$here/inittab" "$stage/etc/inittab"
install -m 0755 "$here/cloud-init" "$stage/usr/sbin/nubis-cloud-init"
install -m 0644 "$here/jsonflat.awk" "$stage/usr/share/nubis/jsonflat.awk"

cp "$kdir"/modules/*.ko "$stage/lib/modules/"
cp "$kdir/modules.list" "$stage/etc/nubis/modules"
echo "$kver" > "$stage/etc/nubis/kernel-release"

# dropbear (started by nubis-cloud-init), its client dbclient (a guest that
# holds an SSH session to another guest, tests/live_migration.rs), iperf3
# (bandwidth tests) and the shared libraries they need. Each keeps its path.
dropbear_bins=(/usr/sbin/dropbear /usr/bin/dropbearkey /usr/bin/dbclient /usr/bin/iperf3)
for b in "${dropbear_bins[@]}"; do
    [ -x "$b" ] || die "$b is missing (package dropbear-bin or iperf3)"
    cp "$b" "$stage$b"
done
for lib in $(for b in "${dropbear_bins[@]}"; do
        ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
    done | sort -u); do
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
done

cat > "$stage/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat > "$stage/etc/group" <<'EOF'
root:x:0:
EOF
# Locked password: console is a root shell anyway; SSH later uses keys only.
cat > "$stage/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
EOF
chmod 0600 "$stage/etc/shadow"
echo /bin/sh > "$stage/etc/shells"
echo nubis-tiny > "$stage/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$stage/etc/hosts"
: > "$stage/etc/resolv.conf"

# Reproducible archive: fixed mtimes, sorted names, no gzip timestamp.
find "$stage" -exec touch -h -d @0 {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -n -6 > "$out/.initrd.img.tmp"
install_if_changed "$out/.initrd.img.tmp" "$out/initrd.img"

# ---------------------------------------------------------------- disk
# Created once; tests boot it through qcow2 overlays so it stays zeroed.
if [ ! -f "$out/disk.qcow2" ]; then
    truncate -s 0 "$out/.disk.raw"
    truncate -s 16M "$out/.disk.raw"
    qemu-img convert -q -f raw -O qcow2 "$out/.disk.raw" "$out/.disk.qcow2.tmp"
    rm -f "$out/.disk.raw"
    mv -f "$out/.disk.qcow2.tmp" "$out/disk.qcow2"
    log "wrote $out/disk.qcow2"
fi

# ---------------------------------------------------------------- cmdline
# loglevel=4: only kernel warnings on the console (keeps the contract lines clean);
# the rest are the usual VM boot shortcuts (no TSC watchdog, no IO-APIC timer
# check, no PS/2 mouse probe) and no CPU mitigations (a throwaway test guest).
cmdline="console=tty0 console=ttyS0,115200 loglevel=4 tsc=reliable no_timer_check i8042.noaux mitigations=off"
printf '%s\n' "$cmdline" > "$out/.cmdline.txt.tmp"
install_if_changed "$out/.cmdline.txt.tmp" "$out/cmdline.txt"

log "done: $out ($kver)"
