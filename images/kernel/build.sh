#!/usr/bin/env bash
# smelt/kernel: Debian's generic kernel (linux-image-amd64, not the cloud
# flavour: that one has no AHCI, USB or most NIC drivers, so it cannot boot
# a physical machine, a SATA CD drive or a USB stick) in LinuxKit's
# kernel-image layout:
#   /kernel        the bzImage
#   /kernel.tar    lib/modules/<version>/... (unpacked into the root by smelt build)
#   /kernel.config the kernel's build configuration (for `smelt kernel check`)
#   /cmdline       a default command line
# Usage: build.sh ROOTDIR   (prints the tag version on stdout)
source "$(dirname "$0")/../lib.sh"
root=$1
meta=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deb_unpack "$meta" "$work/deb"
kver=$(ls "$work/deb/lib/modules" | head -n1)
mkdir -p "$root"
cp "$work/deb/boot/vmlinuz-$kver" "$root/kernel"
cp "$work/deb/boot/config-$kver" "$root/kernel.config"
# Modules a server or VM image does not use (graphics, media, sound,
# wireless, radio, exotic filesystems and buses) are left out: they are
# two thirds of the 390 MiB. Storage, USB, HID, NICs, netfilter, md and the
# common filesystems stay.
mods="$work/deb/lib/modules/$kver/kernel"
for d in sound drivers/gpu drivers/media drivers/staging drivers/iio drivers/comedi \
    drivers/infiniband drivers/video drivers/bluetooth drivers/mtd drivers/isdn drivers/mmc \
    drivers/memstick drivers/nfc drivers/w1 drivers/leds drivers/gnss drivers/fpga \
    drivers/parport drivers/pcmcia drivers/ssb drivers/bcma drivers/atm \
    drivers/net/wireless drivers/net/can drivers/net/ieee802154 drivers/net/wwan \
    drivers/net/hamradio drivers/net/arcnet drivers/net/fddi drivers/net/wan \
    net/wireless net/mac80211 net/bluetooth net/nfc net/ieee802154 net/mac802154 \
    net/can net/atm net/rxrpc net/rds net/tipc net/x25 net/appletalk net/phonet \
    net/caif net/6lowpan fs/ocfs2 fs/gfs2 fs/ubifs fs/jffs2 fs/afs fs/coda fs/orangefs \
    fs/nilfs2 fs/hfs fs/hfsplus fs/reiserfs fs/jfs fs/ufs fs/minix fs/befs fs/sysv \
    fs/qnx4 fs/qnx6 fs/omfs fs/affs fs/adfs fs/efs fs/hpfs fs/freevxfs fs/bfs; do
    rm -rf "${mods:?}/$d"
done
# depmod output makes module loading work without the host's tools.
depmod -b "$work/deb" "$kver"
tar -C "$work/deb" --sort=name --mtime="@${SOURCE_DATE_EPOCH:-0}" \
    --owner=0 --group=0 --numeric-owner --format=gnu -cf "$root/kernel.tar" lib/modules
echo "console=ttyS0" > "$root/cmdline"
chmod 0644 "$root/kernel" "$root/kernel.config" "$root/kernel.tar" "$root/cmdline"
echo "$kver"
