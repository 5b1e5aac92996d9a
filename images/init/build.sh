#!/usr/bin/env bash
# smelt/init: smelt's own PID 1 (the static `init` binary of the
# images/init crate, built by `make build`) at /init and /sbin/init, plus
# the directories and device nodes it needs before it mounts anything.
# Usage: build.sh ROOTDIR   (prints the tag version on stdout)
set -euo pipefail
root=$1
bin=${INIT_BIN:-target/x86_64-unknown-linux-gnu/release/init}
if [ ! -x "$bin" ]; then
    echo "recipe init: $bin not built (run make build)" >&2
    exit 1
fi
if ! file "$bin" | grep -Eq 'statically linked|static-pie linked'; then
    echo "recipe init: $bin is not statically linked" >&2
    exit 1
fi
mkdir -p "$root/sbin" "$root/dev" "$root/proc" "$root/sys" "$root/run" "$root/tmp" \
    "$root/etc" "$root/var/log" "$root/containers"
install -m 0755 "$bin" "$root/init"
ln -s ../init "$root/sbin/init"
chmod 1777 "$root/tmp"
# The crate's version names the image.
awk -F'"' '/^version/ {print $2; exit}' images/init/Cargo.toml
