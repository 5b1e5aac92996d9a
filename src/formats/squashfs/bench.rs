//! The benchmark entry point of `scripts/bench-squashfs.sh` (ignored in
//! normal test runs): the writer on a host directory, timed.

use std::fs;
use std::path::PathBuf;

use super::*;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The benchmark entry point of `scripts/bench-squashfs.sh`: writes the host
/// directory `SQUASHFS_BENCH_SRC` to `SQUASHFS_BENCH_OUT` with
/// `SQUASHFS_BENCH_COMP` (zstd, gzip or xz) at `SQUASHFS_BENCH_LEVEL`, using
/// `SQUASHFS_BENCH_THREADS` workers, and prints the times.
#[test]
#[ignore = "benchmark: run by scripts/bench-squashfs.sh"]
fn bench_write_host_dir() {
    let src = PathBuf::from(std::env::var("SQUASHFS_BENCH_SRC").expect("SQUASHFS_BENCH_SRC"));
    let out = PathBuf::from(std::env::var("SQUASHFS_BENCH_OUT").expect("SQUASHFS_BENCH_OUT"));
    let level = env_or("SQUASHFS_BENCH_LEVEL", "");
    let compression = match env_or("SQUASHFS_BENCH_COMP", "zstd").as_str() {
        "gzip" => SquashfsCompression::Gzip {
            level: level.parse().unwrap_or(DEFAULT_GZIP_LEVEL),
        },
        "xz" => SquashfsCompression::Xz {
            level: level.parse().unwrap_or(DEFAULT_XZ_LEVEL),
        },
        _ => SquashfsCompression::Zstd {
            level: level.parse().unwrap_or(DEFAULT_ZSTD_LEVEL),
        },
    };
    let o = SquashfsOptions {
        compression,
        mkfs_time: 1_700_000_000,
        threads: env_or("SQUASHFS_BENCH_THREADS", "2")
            .parse()
            .expect("threads"),
        ..SquashfsOptions::default()
    };
    let t0 = std::time::Instant::now();
    let tree = FsTree::from_host_dir(&src, None, 1_700_000_000).expect("from_host_dir");
    let t1 = t0.elapsed();
    let mut f = fs::File::create(&out).expect("create");
    let info = write_squashfs(&tree, &o, &mut f).expect("write_squashfs");
    let t2 = t0.elapsed();
    eprintln!(
        "smelt: scan {:.2}s write {:.2}s total {:.2}s bytes_used {} image {} inodes {} duplicates {}",
        t1.as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        t2.as_secs_f64(),
        info.bytes_used,
        info.image_size,
        info.inodes,
        info.duplicates
    );
}
