#!/usr/bin/env bash
# smelt/busybox: Debian's static busybox at /bin/busybox with a link for
# every applet (relative symlinks, /bin/sh among them), plus the few
# directories a shell-based root expects.
# Usage: build.sh ROOTDIR   (prints the tag version on stdout)
source "$(dirname "$0")/../lib.sh"
root=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deb_unpack busybox-static "$work/deb"
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/etc" \
    "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/root" "$root/var"
install -m 0755 "$work/deb/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do
    [ "$applet" = "bin/busybox" ] && continue
    dir=$(dirname "$applet")
    mkdir -p "$root/$dir"
    # Relative links so the image works wherever its root is mounted.
    up=$(echo "$dir" | sed 's|[^/]*|..|g')
    ln -sf "$up/bin/busybox" "$root/$applet"
done
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
deb_version busybox-static | tr ':~+' '---'
