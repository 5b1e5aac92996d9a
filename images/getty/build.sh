#!/usr/bin/env bash
# smelt/getty: busybox plus a label that runs a root shell on the serial
# console (busybox getty -n -l /bin/sh), for interactive images and tests.
# The label allows every char device in the container's device cgroup: without
# it runc denies opening /dev/ttyS0 (EPERM) and getty exits with code 1.
# Usage: build.sh ROOTDIR   (prints the tag version on stdout)
set -euo pipefail
"$(dirname "$0")/../busybox/build.sh" "$1"
