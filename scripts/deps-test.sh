#!/usr/bin/env bash
# Checks that scripts/deps.sh repairs a machine whose packages were arranged
# by somebody else (issue 9). As root; changes the machine's packages:
#   1. qemu-utils at a version no apt source offers (the archive's .deb
#      repacked under a higher version, as a backport would be): deps.sh must
#      bring it back to the archive's version;
#   2. qemu-utils removed: deps.sh must install it;
#   3. a command deleted behind dpkg's back (mcopy): deps.sh must reinstall
#      its package;
#   4. after each, `deps.sh --check` passes and `qemu-img` runs;
#   5. `deps.sh --check` on a machine missing a command fails naming the
#      command and its package.
# Usage: scripts/deps-test.sh   (run by .ci/run before make image)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "deps-test: needs root" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "deps-test: FAIL: $*" >&2; exit 1; }
qemu_img_works() { hash -r; qemu-img --version >/dev/null || fail "qemu-img does not run after deps.sh ($1)"; }

scripts/deps.sh
qemu_img_works "baseline"

# 1. A foreign, newer qemu-utils.
(cd "$work" && apt-get download -q qemu-utils >/dev/null)
dpkg-deb -R "$work"/qemu-utils_*.deb "$work/pkg"
archive=$(awk '/^Version:/ {print $2}' "$work/pkg/DEBIAN/control")
sed -i 's/^Version: .*/Version: 1:99.0+smelt-deps-test/' "$work/pkg/DEBIAN/control"
dpkg-deb -b "$work/pkg" "$work/foreign.deb" >/dev/null
dpkg -i "$work/foreign.deb" >/dev/null
[ "$(dpkg-query -W -f='${Version}' qemu-utils)" = "1:99.0+smelt-deps-test" ] || fail "could not install the foreign qemu-utils"
scripts/deps.sh
got=$(dpkg-query -W -f='${Version}' qemu-utils)
[ "$got" = "$archive" ] || fail "qemu-utils is $got after deps.sh, want the archive's $archive"
qemu_img_works "foreign version"

# 2. qemu-utils removed.
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q qemu-utils >/dev/null
hash -r
! command -v qemu-img >/dev/null || fail "qemu-img still there after removing qemu-utils"
scripts/deps.sh
qemu_img_works "removed"

# 3. and 5. A file deleted behind dpkg's back.
mcopy=$(command -v mcopy)
mv "$mcopy" "$work/mcopy.saved"
if out=$(scripts/deps.sh --check 2>&1); then
    mv "$work/mcopy.saved" "$mcopy"
    fail "deps.sh --check passed with mcopy missing"
fi
grep -qx 'deps: missing mcopy (package mtools)' <<<"$out" || {
    mv "$work/mcopy.saved" "$mcopy"
    fail "deps.sh --check did not name mcopy and mtools: $out"
}
scripts/deps.sh
[ -x "$mcopy" ] || fail "deps.sh did not reinstall mtools"
scripts/deps.sh --check
echo "deps-test: 3 passed, 0 failed"
