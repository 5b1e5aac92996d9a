#!/usr/bin/env bash
# smelt/runc: Debian's runc at /usr/bin/runc with exactly the shared
# libraries it needs (from Debian's libc6 and libseccomp2 packages), so the
# init can start containers from any root. Nothing from the build host.
# Usage: build.sh ROOTDIR   (prints the tag version on stdout)
source "$(dirname "$0")/../lib.sh"
root=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in runc libseccomp2 libc6; do
    deb_unpack "$p" "$work/deb"
done
mkdir -p "$root/usr/bin" "$root/lib/x86_64-linux-gnu" "$root/lib64"
install -m 0755 "$work/deb/usr/sbin/runc" "$root/usr/bin/runc"
# The dynamic loader, then every NEEDED library of runc, copied (not linked)
# from the unpacked packages.
cp -L "$work/deb/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$root/lib/x86_64-linux-gnu/"
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib64/ld-linux-x86-64.so.2"
for lib in $(objdump -p "$root/usr/bin/runc" | awk '/NEEDED/ {print $2}'); do
    src=$(find "$work/deb" -name "$lib" | head -n1)
    if [ -z "$src" ]; then
        echo "recipe runc: library $lib not found in the unpacked packages" >&2
        exit 1
    fi
    cp -L "$src" "$root/lib/x86_64-linux-gnu/$lib"
done
chmod 0755 "$root"/lib/x86_64-linux-gnu/*
deb_version runc | tr ':~+' '---'
