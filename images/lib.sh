# Shared helpers for image recipes: fetch a Debian package and unpack it
# without installing it on the host. Sourced by images/*/build.sh.
set -euo pipefail

# deb_unpack PACKAGE DESTDIR: download PACKAGE's .deb (current candidate of the
# host's apt sources) into the recipe cache and unpack its files into DESTDIR.
deb_unpack() {
    local pkg=$1 dest=$2 cache=${RECIPE_CACHE:-${TMPDIR:-/tmp}/smelt-recipes}
    mkdir -p "$cache" "$dest"
    local ver
    ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
    if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
        echo "recipe: package $pkg not found in apt sources (run apt-get update)" >&2
        return 1
    fi
    local deb
    # Architecture-independent packages (isolinux, …) are `_all.deb`.
    deb=$(ls "$cache/${pkg}_"*"_"{amd64,all}".deb" 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        (cd "$cache" && apt-get download -q "$pkg=$ver" >&2)
        deb=$(ls "$cache/${pkg}_"*"_"{amd64,all}".deb" 2>/dev/null | head -n1 || true)
    fi
    dpkg-deb -x "$deb" "$dest"
}

# The version string of a Debian package's candidate, for image tags.
deb_version() {
    apt-cache policy "$1" | awk '/Candidate:/ {print $2}'
}
