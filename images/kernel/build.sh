#!/usr/bin/env bash
# smelt/kernel: Debian's cloud kernel in LinuxKit's kernel-image layout:
#   /kernel        the bzImage
#   /kernel.tar    lib/modules/<version>/... (unpacked into the root by smelt build)
#   /kernel.config the kernel's build configuration (for `smelt kernel check`)
#   /cmdline       a default command line
# Usage: build.sh ROOTDIR   (prints the tag version on stdout)
source "$(dirname "$0")/../lib.sh"
root=$1
meta=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deb_unpack "$meta" "$work/deb"
kver=$(ls "$work/deb/lib/modules" | head -n1)
mkdir -p "$root"
cp "$work/deb/boot/vmlinuz-$kver" "$root/kernel"
cp "$work/deb/boot/config-$kver" "$root/kernel.config"
# depmod output makes module loading work without the host's tools.
depmod -b "$work/deb" "$kver"
tar -C "$work/deb" --sort=name --mtime="@${SOURCE_DATE_EPOCH:-0}" \
    --owner=0 --group=0 --numeric-owner --format=gnu -cf "$root/kernel.tar" lib/modules
echo "console=ttyS0" > "$root/cmdline"
chmod 0644 "$root/kernel" "$root/kernel.config" "$root/kernel.tar" "$root/cmdline"
echo "$kver"
