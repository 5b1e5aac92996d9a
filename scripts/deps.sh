#!/usr/bin/env bash
# Installs the Debian packages smelt's build, image recipes, tests and
# benchmarks use, then checks that every command and file they call is there.
#
# One list (NEEDS below): each line names what the project runs (a command
# on PATH, or an absolute file path) and the package that provides it. The
# script leaves a machine on which all of them are present and of one
# consistent release, whatever the machine had before:
#   - packages not installed are installed;
#   - packages installed at a version no configured apt source offers (a
#     backport or a hand-installed .deb) are brought back to the archive's
#     version, so that they agree with the packages installed next to them
#     (a backported qemu-utils is otherwise REMOVED by apt when it installs
#     the archive's qemu-system-x86, issue 9);
#   - a command whose package is installed but whose file is gone is
#     reinstalled.
# Afterwards every entry is checked; a missing one fails the script, naming
# the command and its package. Idempotent: a machine that has everything
# runs no apt-get at all beyond the update recipes need.
#
# Usage: scripts/deps.sh [--check]   (--check: only check, install nothing)
set -euo pipefail

# what-the-project-runs  package
NEEDS='
/sbin/depmod                  kmod
tar                           tar
gzip                          gzip
zstd                          zstd
xz                            xz-utils
objdump                       binutils
file                          file
dpkg-deb                      dpkg
sha256sum                     coreutils
python3                       python3
docker-registry               docker-registry
qemu-system-x86_64            qemu-system-x86
qemu-img                      qemu-utils
/usr/share/OVMF/OVMF_CODE.fd  ovmf
/usr/share/OVMF/OVMF_VARS.fd  ovmf
/usr/share/OVMF/OVMF_CODE_4M.fd ovmf
cpio                          cpio
busybox                       busybox-static
unsquashfs                    squashfs-tools
mksquashfs                    squashfs-tools
xorriso                       xorriso
isoinfo                       genisoimage
fsck.fat                      dosfstools
mcopy                         mtools
mdir                          mtools
mtype                         mtools
sgdisk                        gdisk
sfdisk                        fdisk
fdisk                         fdisk
blkid                         util-linux
mount                         mount
sbsign                        sbsigntool
sbverify                      sbsigntool
openssl                       openssl
/usr/lib/ISOLINUX/isolinux.bin isolinux
/usr/lib/syslinux/modules/bios/ldlinux.c32 syslinux-common
/usr/lib/systemd/boot/efi/linuxx64.efi.stub systemd-boot-efi
/usr/bin/time                 time
bc                            bc
ip                            iproute2
ss                            iproute2
dnsmasq                       dnsmasq-base
'

# The file a need names: an absolute path as it is, a command on PATH.
need_path() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) command -v "$1" || true ;;
    esac
}

# Lines "need package" for every need that is not there.
missing_needs() {
    local need pkg p
    while read -r need pkg; do
        [ -n "$need" ] || continue
        p=$(need_path "$need")
        if [ -z "$p" ] || [ ! -e "$p" ]; then
            printf '%s %s\n' "$need" "$pkg"
        fi
    done <<<"$NEEDS"
}

check_only=false
[ "${1:-}" = "--check" ] && check_only=true

if ! $check_only; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Lists left from an older day may name .debs the mirror no longer has:
    # on failure, update the lists once and try again.
    updated=false
    apt_install() {
        echo "deps: apt-get install $*" >&2
        if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --allow-downgrades "$@"; then
            $updated && return 1
            $sudo apt-get update -q
            updated=true
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --allow-downgrades "$@"
        fi
    }
    pkgs=$(awk 'NF == 2 {print $2}' <<<"$NEEDS" | sort -u)
    # Recipes download .debs with apt-get download, which needs current lists.
    if [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial)" ]; then
        $sudo apt-get update -q
        updated=true
    fi
    want=()
    for p in $pkgs; do
        inst=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null || true)
        case $inst in
            "install ok installed "*)
                ver=${inst##* }
                # Offered by a configured source? `apt-cache madison` lists
                # only those, never the dpkg status file.
                if apt-cache madison "$p" | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "$ver"; then
                    continue
                fi
                archive=$(apt-cache madison "$p" | awk -F'|' 'NR == 1 {gsub(/ /, "", $2); print $2}')
                if [ -z "$archive" ]; then
                    echo "deps: $p $ver is installed and no apt source offers it; keeping it" >&2
                    continue
                fi
                echo "deps: $p $ver is not from a configured apt source; using the archive's $archive" >&2
                want+=("$p=$archive")
                ;;
            *) want+=("$p") ;;
        esac
    done
    if [ ${#want[@]} -gt 0 ]; then
        apt_install "${want[@]}"
    fi
    # Installed but a file is gone (removed by hand, a broken upgrade).
    broken=$(missing_needs | awk '{print $2}' | sort -u)
    if [ -n "$broken" ]; then
        # shellcheck disable=SC2086
        apt_install --reinstall $broken
    fi
fi

gone=$(missing_needs)
if [ -n "$gone" ]; then
    while read -r need pkg; do
        echo "deps: missing $need (package $pkg)" >&2
    done <<<"$gone"
    exit 1
fi
echo "deps: all $(awk 'NF == 2' <<<"$NEEDS" | wc -l) commands and files present" >&2
