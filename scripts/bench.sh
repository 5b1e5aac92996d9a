#!/usr/bin/env bash
# Benchmark: `smelt build -f kernel+initrd` against the classic pipeline
# `find | cpio -o -H newc | gzip` and against plain `gzip` of the same cpio
# bytes, at the same gzip level, on the same tree; plus smelt's peak RSS.
#
# Roots are real files copied from this machine's /usr in a fixed
# shuffled order (a mix of small and large files; a few hundred MB,
# and a 1 GiB one for the memory target), packed into a one-layer image in
# a scratch store. Timings are wall-clock medians of 3 runs with a warm
# store (layers already decompressed), so they compare the build itself.
# Prints ratios; asserts nothing (machines are shared and noisy).
# BENCH=inject times `smelt inject` on a 1 GiB raw image and a 1 GiB ISO (inject_case).
set -euo pipefail
cd "$(dirname "$0")/.."
SMELT=${SMELT:-$PWD/target/x86_64-unknown-linux-gnu/release/smelt}
LEVEL=${LEVEL:-6}
work=$(mktemp -d /var/tmp/smelt-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export SMELT_STORE=$work/store

# make_root DIR MIB: copy files from /usr in a fixed order until MIB is reached.
make_root() {
    local dir=$1 limit=$(( $2 * 1024 * 1024 ))
    mkdir -p "$dir"
    # awk stops early by design: the SIGPIPE upstream is not a failure.
    (set +o pipefail; cd / && find usr/lib usr/share usr/bin -xdev \( -type f -o -type l \) -printf '%s %p\n' | LC_ALL=C sort -R --random-source=<(yes smelt) |
        awk -v limit="$limit" '{ total += $1; if (total > limit) exit; sub(/^[0-9]+ /, ""); print }' |
        cpio -pdm --quiet "$dir")
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# time_cmd CMD...: wall seconds of one run.
time_cmd() {
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

run_case() {
    local mib=$1
    local root=$work/root-$mib
    make_root "$root" "$mib"
    local bytes files
    bytes=$(du -sb "$root" | cut -f1)
    files=$(find "$root" | wc -l)
    "$SMELT" -q image pack "$root" --tag bench/root-$mib:latest >/dev/null
    mkdir -p "$work/k" && head -c 1048576 /dev/zero > "$work/k/kernel"
    "$SMELT" -q image pack "$work/k" --tag bench/kernel:latest >/dev/null
    cat > "$work/bench-$mib.yml" <<YML
kernel:
  image: bench/kernel:latest
  tar: none
init:
  - bench/root-$mib:latest
initrd:
  compression: gzip
  level: $LEVEL
YML
    # Warm the store (layer decompression happens once per store).
    "$SMELT" -q build --pull never -o "$work/out" "$work/bench-$mib.yml"
    local s p g rss
    s=$(for i in 1 2 3; do time_cmd "$SMELT" -q build --pull never -o "$work/out" "$work/bench-$mib.yml"; done | median)
    p=$(for i in 1 2 3; do time_cmd bash -c "cd '$root' && find . | cpio -o -H newc --quiet | gzip -$LEVEL > '$work/pipe.gz'"; done | median)
    (cd "$root" && find . | cpio -o -H newc --quiet > "$work/plain.cpio")
    g=$(for i in 1 2 3; do time_cmd bash -c "gzip -$LEVEL < '$work/plain.cpio' > '$work/plain.gz'"; done | median)
    rss=$( { /usr/bin/time -f '%M' "$SMELT" -q build --pull never -o "$work/out" "$work/bench-$mib.yml" >/dev/null; } 2>&1 | tail -n1)
    printf '%-5s MiB root, %6d files: smelt %6.2fs | find|cpio|gzip %6.2fs (ratio %.2f, target < 1) | gzip alone %6.2fs (ratio %.2f, target <= 1.25) | smelt peak RSS %d MiB\n' \
        "$(( bytes / 1048576 ))" "$files" "$s" "$p" "$(echo "$s / $p" | bc -l)" "$g" "$(echo "$s / $g" | bc -l)" "$(( rss / 1024 ))"
    printf '      sizes: smelt initrd %d bytes, pipeline %d bytes\n' \
        "$(stat -c %s "$work/out/bench-$mib-initrd.img")" "$(stat -c %s "$work/pipe.gz")"
    rm -rf "$root" "$work/plain.cpio" "$work/plain.gz" "$work/pipe.gz"
}

# boot_case: examples/minimal.yml from the real store (make image), booted
# with `smelt run` under TCG; wall time from starting QEMU until the
# console shows `Welcome to smelt`, median of 3, and the initramfs size.
boot_case() {
    local store=${SMELT_STORE_REAL:-${XDG_CACHE_HOME:-$HOME/.cache}/smelt}
    "$SMELT" -q --store "$store" build --pull never -o "$work/boot" examples/minimal.yml
    local times=() t0 t1 i
    for i in 1 2 3; do
        t0=$(date +%s.%N)
        # The marker's arrival is timed inside the pipeline; the guest
        # itself powers off after it (or smelt run's timeout ends it).
        rm -f "$work/t1"
        timeout 120 "$SMELT" run "$work/boot/minimal-kernel" --timeout 100 2>/dev/null |
            { grep -q -m1 'Welcome to smelt' && date +%s.%N > "$work/t1"; cat > /dev/null; } || true
        if [ -s "$work/t1" ]; then
            t1=$(cat "$work/t1")
            times+=("$(echo "$t1 - $t0" | bc -l)")
        else
            echo "boot: run $i never printed the marker" >&2
        fi
    done
    local med
    med=$(printf '%s\n' "${times[@]}" | median)
    printf 'boot  examples/minimal.yml: QEMU start to "Welcome to smelt" %.2fs (median of %d, TCG) | initramfs %d bytes\n' \
        "$med" "${#times[@]}" "$(stat -c %s "$work/boot/minimal-initrd.img")"
}

# media_case: examples/minimal.yml from a warm store: the squashfs root
# alone (-f kernel+squashfs) against the full media set (-f iso -f raw
# -f kernel+initrd), which should cost little more (the root squashfs is
# built once and shared).
media_case() {
    local store=${SMELT_STORE_REAL:-${XDG_CACHE_HOME:-$HOME/.cache}/smelt}
    local b=(-q --store "$store" build --pull never)
    "$SMELT" "${b[@]}" -o "$work/m0" -f kernel+squashfs examples/minimal.yml
    local sq all
    sq=$(for i in 1 2 3; do time_cmd "$SMELT" "${b[@]}" -o "$work/m1" -f kernel+squashfs examples/minimal.yml; done | median)
    all=$(for i in 1 2 3; do time_cmd "$SMELT" "${b[@]}" -o "$work/m2" -f iso -f raw -f kernel+initrd examples/minimal.yml; done | median)
    printf 'media examples/minimal.yml: -f kernel+squashfs %.2fs | -f iso -f raw -f kernel+initrd %.2fs (ratio %.2f) | root squashfs %d bytes\n' \
        "$sq" "$all" "$(echo "$all / $sq" | bc -l)" "$(stat -c %s "$work/m1/minimal-squashfs.img")"
}

# inject_case: `smelt inject` in place into a 1 GiB raw image and a 1 GiB
# ISO, each holding a 4 MiB slot and the slot index of docs/slots.md
# (written here with python3), made pristine by `smelt inject --clear`:
#   raw: a sparse file, the slot 5 MiB before the end;
#   ISO: made by xorriso from a 1 GiB file and a 4 MiB CIDATA.IMG, the
#        index pointing at CIDATA.IMG's extent (xorriso's report_lba).
# Median of 5 in-place injects of a small seed each; target under 50 ms.
write_index() { # IMAGE SLOT_OFFSET
    python3 - "$1" "$2" <<'PY'
import struct, sys, zlib
length = 4 << 20
entry = b"nocloud-fat".ljust(16, b"\0") + struct.pack("<QQIq", int(sys.argv[2]), length, 0xC1DA7A00, 0) + bytes(20)
head = b"SMELTSLT" + struct.pack("<II", 1, 1) + entry
head = head.ljust(508, b"\0")
with open(sys.argv[1], "r+b") as f:
    f.seek(24576)
    f.write(head + struct.pack("<I", zlib.crc32(head)))
PY
}

time_inject() { # IMAGE LABEL
    local img=$1 t
    "$SMELT" -q inject "$img" --clear
    t=$(for i in 1 2 3 4 5; do time_cmd "$SMELT" -q inject "$img" --user-data "$work/user-data" --meta-data "$work/meta-data"; done | median)
    "$SMELT" inject "$img" --show | grep -q 'hostname: bench' || { echo "inject: seed not found after inject into $2" >&2; return 1; }
    printf 'inject %s, 4 MiB slot, in place: %.0f ms (median of 5; target < 50 ms)\n' "$2" "$(echo "$t * 1000" | bc -l)"
}

inject_case() {
    printf '#cloud-config\nhostname: bench\nssh_authorized_keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIbench bench@smelt\n' > "$work/user-data"
    printf 'instance-id: bench\n' > "$work/meta-data"
    local img=$work/inject.raw
    truncate -s 1G "$img"
    write_index "$img" $(( (1 << 30) - (5 << 20) ))
    time_inject "$img" "1 GiB raw"
    rm -f "$img"
    local src=$work/iso-src iso=$work/inject.iso lba
    mkdir -p "$src"
    head -c $(( 1020 << 20 )) /dev/zero > "$src/filler"
    head -c $(( 4 << 20 )) /dev/zero > "$src/CIDATA.IMG"
    xorriso -as mkisofs -quiet -R -V BENCH -o "$iso" "$src" 2>/dev/null
    rm -rf "$src"
    lba=$(xorriso -indev "$iso" -find /CIDATA.IMG -exec report_lba -- 2>/dev/null | awk '/File data lba/ {print $6}' | tr -d ,)
    write_index "$iso" $(( lba * 2048 ))
    time_inject "$iso" "$(( $(stat -c %s "$iso") >> 20 )) MiB ISO"
    rm -f "$iso"
}

echo "smelt bench: gzip level $LEVEL, $(nproc) cores"
case "${BENCH:-all}" in
    boot) boot_case ;;
    build) run_case "${BENCH_MIB:-300}"; run_case 1024 ;;
    media) media_case ;;
    squashfs) scripts/bench-squashfs.sh "${SQUASHFS_SRC:-/usr/share}" ;;
    inject) inject_case ;;
    *)
        inject_case
        boot_case
        media_case
        scripts/bench-squashfs.sh "${SQUASHFS_SRC:-/usr/share}"
        run_case "${BENCH_MIB:-300}"
        run_case 1024
        ;;
esac
