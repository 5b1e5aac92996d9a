#!/usr/bin/env bash
# smelt/getty: busybox plus a label that runs a root shell on the serial
# console (busybox getty -n -l /bin/sh), for interactive images and tests.
# Usage: build.sh ROOTDIR   (prints the tag version on stdout)
set -euo pipefail
"$(dirname "$0")/../busybox/build.sh" "$1"
