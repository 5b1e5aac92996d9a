#!/usr/bin/env bash
# smelt/poweroff: busybox plus /usr/bin/poweroff-after SECONDS, which asks
# the host's init (PID 1, shared through pid: host) to power off by sending
# SIGUSR2, busybox init's poweroff signal, which smelt's init follows.
# Usage: build.sh ROOTDIR   (prints the tag version on stdout)
set -euo pipefail
root=$1
ver=$("$(dirname "$0")/../busybox/build.sh" "$root" | tail -n1)
cat > "$root/usr/bin/poweroff-after" <<'SH'
#!/bin/sh
sleep "${1:-0}"
echo "poweroff-after: asking init to power off"
kill -USR2 1
SH
chmod 0755 "$root/usr/bin/poweroff-after"
echo "$ver"
