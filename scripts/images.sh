#!/usr/bin/env bash
# Builds the base images: each recipe images/NAME/build.sh fills a
# directory and prints its version; smelt packs the directory into a
# one-layer OCI image in the store, tagged smelt/NAME:VERSION and :latest,
# with images/NAME/owners (ownership, device nodes) and images/NAME/config.json
# (the image config, e.g. an org.mobyproject.config label) when present.
# Usage: scripts/images.sh SMELT NAME...
set -euo pipefail
smelt=$1
shift
for img in "$@"; do
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    ver=$("images/$img/build.sh" "$dir/root")
    ver=$(printf '%s\n' "$ver" | tail -n1)
    extra=()
    [ -f "images/$img/owners" ] && extra+=(--owners "images/$img/owners")
    [ -f "images/$img/config.json" ] && extra+=(--config "images/$img/config.json")
    "$smelt" image pack "$dir/root" --tag "smelt/$img:$ver" --tag "smelt/$img:latest" "${extra[@]}"
    rm -rf "$dir"
    trap - EXIT
done
