#!/usr/bin/env bash
# smelt/boot: the boot firmware smelt embeds in ISO and raw images, from
# Debian's packages (nothing from the build host):
#   /bios/isolinux.bin  El Torito no-emulation loader (isolinux)
#   /bios/ldlinux.c32   syslinux's core module isolinux loads next
#   /bios/isohdpfx.bin  the isohybrid MBR: BIOS boot of the ISO as a disk
#   /efi/linuxx64.efi.stub  systemd-stub, the UEFI half of the unified kernel image
# Usage: build.sh ROOTDIR   (prints the tag version on stdout)
source "$(dirname "$0")/../lib.sh"
root=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in isolinux syslinux-common systemd-boot-efi; do
    deb_unpack "$p" "$work/deb"
done
mkdir -p "$root/bios" "$root/efi"
install -m 0644 "$work/deb/usr/lib/ISOLINUX/isolinux.bin" "$root/bios/isolinux.bin"
install -m 0644 "$work/deb/usr/lib/ISOLINUX/isohdpfx.bin" "$root/bios/isohdpfx.bin"
install -m 0644 "$work/deb/usr/lib/syslinux/modules/bios/ldlinux.c32" "$root/bios/ldlinux.c32"
install -m 0644 "$work/deb/usr/lib/systemd/boot/efi/linuxx64.efi.stub" "$root/efi/linuxx64.efi.stub"
# Both loaders' versions name the image: syslinux 6.04~git… and systemd 252.…
echo "$(deb_version isolinux | tr ':~+' '---')-systemd$(deb_version systemd-boot-efi | tr ':~+' '---')"
