#!/usr/bin/env bash
# Installs the Debian packages Nubis needs to build, run and test, if missing.
# Safe to run repeatedly: it asks apt only when something is absent.
set -euo pipefail

packages=(
  qemu-system-x86   # the hypervisor
  qemu-utils        # qemu-img for instance overlays
  iproute2          # ip netns for tests
  busybox-static    # tiny test guest
  cpio              # tiny test guest initramfs
  dropbear-bin      # tiny test guest SSH server
  postgresql        # store tests on PostgreSQL
  dnsmasq-base      # DHCP and DNS for instance networks
  nftables          # NAT and isolation of instance networks
  openssh-client    # tests log in to guests
  dnsutils          # tests query the platform DNS (dig)
  iputils-ping      # tests ping guests
  iperf3            # bandwidth tests (host side, and in the tiny test guest)
  python3           # helper scripts
  python3-venv      # the schemathesis venv of the API contract test
  python3-pip       # pip inside that venv
  dosfstools        # fsck.vfat checks the config drive images
  chromium          # portal browser tests (headless)
  chromium-driver   # WebDriver for the portal browser tests
  novnc             # the browser VNC client of the console page
  grub-pc-bin       # the ISO install test builds a BIOS-bootable ISO (grub-mkrescue)
  grub-common       # grub-mkrescue itself
  xorriso           # grub-mkrescue writes the ISO with it
  mtools            # grub-mkrescue's EFI image, where EFI modules are present
  python3-openstackclient  # the OpenStack API test runs Debian's `openstack` client
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
