#!/usr/bin/env bash
# Installs the Debian packages smelt's build, image recipes and tests use.
# Idempotent: installs only what is missing. Runs apt-get update once.
set -euo pipefail
pkgs=(
    # image recipes
    kmod tar gzip zstd binutils
    # tests: real registry, real firmware, independent format readers
    docker-registry qemu-system-x86 ovmf cpio busybox-static
    squashfs-tools xorriso genisoimage dosfstools mtools gdisk fdisk qemu-utils
    sbsigntool openssl isolinux syslinux-common systemd-boot-efi
    # benchmarks
    time bc
)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# Recipes download .debs with apt-get download, which needs current lists.
if [ ${#missing[@]} -gt 0 ] || [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial)" ]; then
    $sudo apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
