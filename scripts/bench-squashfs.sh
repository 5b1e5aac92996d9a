#!/usr/bin/env bash
# Benchmarks smelt's squashfs writer against mksquashfs on the same tree.
#
# Usage: scripts/bench-squashfs.sh [SOURCE_DIR]   (default /usr/share)
#
# SOURCE_DIR is copied into a temporary directory (so both tools read the
# same files, from the page cache after a warm-up read), then for each
# compressor (COMPS, default "zstd gzip") it runs
#   mksquashfs TREE IMG -comp C -Xcompression-level L -noappend -processors P
# (plus -all-root and fixed times, as smelt stores host trees owned by root)
# and smelt's writer with P workers, RUNS times each (default 2), keeping the
# fastest run, and prints times, sizes and smelt/mksquashfs ratios.
# Environment: RUNS, COMPS, PROCESSORS (default 2), ZSTD_LEVEL (15),
# GZIP_LEVEL (9), XZ_LEVEL (6), KEEP=1 keeps the work directory.
set -euo pipefail

src=${1:-/usr/share}
runs=${RUNS:-2}
comps=${COMPS:-zstd gzip}
procs=${PROCESSORS:-2}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-squashfs.XXXXXX")
if [[ ${KEEP:-0} != 1 ]]; then
    trap 'rm -rf "$work"' EXIT
fi

echo "building the release test binary" >&2
bin=$(cd "$repo" && cargo test --release --lib --no-run 2>&1 |
    sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))/\1/p' | tail -1)
[[ -n $bin ]] || { echo "could not find the test binary" >&2; exit 1; }
bin=$repo/$bin

echo "copying $src to $work/tree" >&2
cp -a "$src" "$work/tree"
du -sh --apparent-size "$work/tree" >&2
echo "files: $(find "$work/tree" -type f | wc -l)" >&2
tar cf - -C "$work" tree >/dev/null # warm the page cache

now() { date +%s.%N; }

# best_of CMD...: runs CMD $runs times, prints the fastest wall time.
best_of() {
    local best="" t0 t1 t
    for _ in $(seq "$runs"); do
        t0=$(now)
        "$@" >/dev/null 2>&1
        t1=$(now)
        t=$(echo "$t1 - $t0" | bc)
        if [[ -z $best ]] || (($(echo "$t < $best" | bc))); then best=$t; fi
    done
    echo "$best"
}

printf '%-5s %10s %10s %8s %14s %14s %8s\n' comp mksq_s smelt_s time_x mksq_bytes smelt_bytes size_x
for comp in $comps; do
    case $comp in
    zstd) level=${ZSTD_LEVEL:-15} ;;
    gzip) level=${GZIP_LEVEL:-9} ;;
    xz) level=${XZ_LEVEL:-6} ;;
    *) echo "unknown compressor $comp" >&2; exit 1 ;;
    esac
    levelopt=(-Xcompression-level "$level")
    [[ $comp == xz ]] && levelopt=()
    theirs=$work/mksquashfs-$comp.img
    ours=$work/smelt-$comp.img
    t_theirs=$(best_of mksquashfs "$work/tree" "$theirs" -comp "$comp" "${levelopt[@]}" \
        -noappend -processors "$procs" -all-root -all-time 1700000000 -mkfs-time 1700000000)
    t_ours=$(best_of env SQUASHFS_BENCH_SRC="$work/tree" SQUASHFS_BENCH_OUT="$ours" \
        SQUASHFS_BENCH_COMP="$comp" SQUASHFS_BENCH_LEVEL="$level" SQUASHFS_BENCH_THREADS="$procs" \
        "$bin" --ignored --exact formats::squashfs::bench::bench_write_host_dir --nocapture)
    s_theirs=$(stat -c %s "$theirs")
    s_ours=$(stat -c %s "$ours")
    unsquashfs -s "$ours" >/dev/null # readable
    printf '%-5s %10.2f %10.2f %8.3f %14d %14d %8.4f\n' "$comp" "$t_theirs" "$t_ours" \
        "$(echo "$t_ours / $t_theirs" | bc -l)" "$s_theirs" "$s_ours" \
        "$(echo "$s_ours / $s_theirs" | bc -l)"
done
