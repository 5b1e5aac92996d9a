//! Differential tests: images are read back by `unsquashfs` (listing and
//! extraction) and, where this machine lets root loop-mount, by the kernel;
//! sizes are compared with `mksquashfs` on the same files.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::check::{Mount, can_mount, check_files, check_listing, xattrs_of};
use super::*;
use crate::tree::testutil::{bytes, dir, meta, run, sample_tree};
use crate::tree::{Content, LeafKind, Node};

const ALL: [SquashfsCompression; 3] = [
    SquashfsCompression::Gzip { level: 9 },
    SquashfsCompression::Xz { level: 6 },
    SquashfsCompression::Zstd { level: 15 },
];

fn opts(compression: SquashfsCompression) -> SquashfsOptions {
    SquashfsOptions {
        compression,
        mkfs_time: 1_700_000_000,
        threads: 2,
        ..SquashfsOptions::default()
    }
}

fn image(tree: &FsTree, o: &SquashfsOptions) -> (Vec<u8>, SquashfsInfo) {
    let mut c = Cursor::new(Vec::new());
    let info = write_squashfs(tree, o, &mut c).expect("write_squashfs");
    assert_eq!(c.position(), info.image_size);
    (c.into_inner(), info)
}

/// A xorshift stream, so test data is reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Text-like bytes: words from a small vocabulary, about 3:1 compressible.
    fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&str; 16] = [
            "squash", "kernel", "initrd", "block", "fragment", "inode", "the", "of", "and",
            "smelt", "image", "layer", "\n", "0x1f", "ext4", "mount",
        ];
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            let r = self.next();
            out.extend_from_slice(WORDS[(r % 16) as usize].as_bytes());
            out.push(if r & 0x300 == 0 {
                (r >> 24) as u8
            } else {
                b' '
            });
        }
        out.truncate(len);
        out
    }

    fn noise(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next() >> 11) as u8).collect()
    }
}

fn ins(t: &mut FsTree, p: &str, n: Node) {
    t.insert(Path::new(p), n).expect("insert");
}

fn file(data: Vec<u8>) -> Node {
    Node::file(meta(0o644, 0), Content::Bytes(Arc::from(data)))
}

/// A valid `security.capability` (VFS_CAP_REVISION_2, effective,
/// cap_net_raw permitted): the kernel and ext4 refuse malformed ones, such
/// as `sample_tree()`'s 8-byte value.
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// `sample_tree()` with a capability the kernel accepts.
fn sample() -> FsTree {
    let mut t = sample_tree();
    t.modify_meta(Path::new("usr/bin/ping"), &mut |m| {
        m.xattrs
            .insert("security.capability".into(), CAP_NET_RAW.to_vec());
    })
    .expect("ping");
    t
}

/// `sample()` plus every case the writer treats specially.
fn full_tree() -> FsTree {
    let bs = DEFAULT_BLOCK_SIZE as usize;
    let mut t = sample();
    let mut r = Rng(0x1234_5678_9abc_def1);
    let mut big = r.text(3 * bs + 1000);
    big[bs..2 * bs].copy_from_slice(&r.noise(bs)); // a block stored raw
    ins(&mut t, "data/big", file(big));
    ins(&mut t, "data/one-block", file(r.text(bs)));
    ins(&mut t, "data/two-blocks", file(r.text(2 * bs)));
    let mut sparse = vec![0u8; 3 * bs + 5];
    sparse[bs + 7] = 1;
    ins(&mut t, "data/sparse", file(sparse));
    ins(&mut t, "data/zeros", file(vec![0u8; 2 * bs]));
    let dup = r.text(5000);
    ins(&mut t, "data/dup1", file(dup.clone()));
    ins(&mut t, "data/dup2", file(dup));
    ins(&mut t, "data/empty-dir", dir(0o700));
    add_special_nodes(&mut t);
    add_big_dirs(&mut t);
    t
}

/// Sockets, fifos, devices and hardlinks, some with xattrs.
fn add_special_nodes(t: &mut FsTree) {
    ins(t, "run/sock", Node::leaf(meta(0o755, 0), LeafKind::Socket));
    let fifo = Node::leaf(meta(0o600, 5), LeafKind::Fifo);
    ins(t, "run/fifo-a", fifo.clone());
    ins(t, "run/fifo-b", fifo);
    let mut xm = meta(0o750, 7);
    xm.xattrs
        .insert("user.comment".into(), b"a directory".to_vec());
    xm.xattrs
        .insert("trusted.overlay.opaque".into(), b"y".to_vec());
    ins(t, "xattr-dir", Node::Dir(crate::tree::Dir::new(xm.clone())));
    // Linux keeps user.* off special files and symlinks (getxattr answers
    // ENODATA even when the filesystem lists one), so these get trusted.*.
    let mut xs = meta(0o640, 7);
    xs.xattrs.insert("trusted.t".into(), vec![0, 1, 2, 255]);
    ins(
        t,
        "xattr-dir/link",
        Node::leaf(xs.clone(), LeafKind::Symlink("../etc/a".into())),
    );
    ins(
        t,
        "xattr-dir/tty",
        Node::leaf(
            xs.clone(),
            LeafKind::CharDev {
                major: 4,
                minor: 300,
            },
        ),
    );
    ins(t, "xattr-dir/fifo", Node::leaf(xs.clone(), LeafKind::Fifo));
    ins(t, "xattr-dir/sock", Node::leaf(xs, LeafKind::Socket));
    let shared_x = Node::file(xm, bytes(b"linked with xattrs"));
    ins(t, "xattr-dir/f1", shared_x.clone());
    ins(t, "f-root-link", shared_x);
    ins(
        t,
        "dev/big",
        Node::leaf(
            meta(0o600, 0),
            LeafKind::BlockDev {
                major: 259,
                minor: 70000,
            },
        ),
    );
}

/// Directories whose listings need several headers, and an index.
fn add_big_dirs(t: &mut FsTree) {
    // 300 short names: headers split at 256 entries, listing under 8 KiB.
    for i in 0..300 {
        ins(
            t,
            &format!("many/{i:03}"),
            Node::file(meta(0o644, i), bytes(b"m")),
        );
    }
    // 1200 long names: a listing of several metadata blocks with an index.
    for i in 0..1200 {
        let name = format!("huge/{i:05}-{}", "n".repeat(40 + i % 50));
        ins(t, &name, file(format!("{i}").into_bytes()));
    }
    ins(
        t,
        &format!("huge/{}", "z".repeat(255)),
        file(b"max name".to_vec()),
    );
    let shared = t.lookup(Path::new("etc/a")).cloned().expect("etc/a");
    ins(t, "huge/00500-link", shared);
}

fn write_to_file(tree: &FsTree, o: &SquashfsOptions, dir: &Path) -> (PathBuf, SquashfsInfo) {
    let path = dir.join("img.sqfs");
    let mut f = fs::File::create(&path).expect("create");
    let info = write_squashfs(tree, o, &mut f).expect("write_squashfs");
    assert_eq!(fs::metadata(&path).expect("stat").len(), info.image_size);
    (path, info)
}

#[test]
fn unsquashfs_lists_and_extracts_every_kind() {
    let tree = full_tree();
    for c in ALL {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (img, info) = write_to_file(&tree, &opts(c), tmp.path());
        assert_eq!(info.image_size % 4096, 0);
        assert!(info.duplicates >= 1, "dup1/dup2 stored once");
        check_listing(&tree, &img);
        let stat = run(Command::new("unsquashfs").arg("-s").arg(&img));
        assert!(
            stat.contains(&format!("Number of inodes {}", info.inodes)),
            "{stat}"
        );
        assert!(stat.contains("Number of xattr ids 3"), "{stat}");
        let out = tmp.path().join("out");
        run(Command::new("unsquashfs")
            .arg("-q")
            .arg("-d")
            .arg(&out)
            .arg(&img));
        check_files(&tree, &out, false);
    }
}

/// The kernel reads every node, including lookups through the directory
/// index of `huge/`. Skipped (with a note) where loop mounts are not
/// allowed: then mksquashfs's own image does not mount either.
#[test]
fn kernel_mounts_and_reads_every_kind() {
    let tree = full_tree();
    let tmp = tempfile::tempdir().expect("tempdir");
    if !can_mount(tmp.path()) {
        return;
    }
    for c in ALL {
        let dir = tmp.path().join(format!("{c:?}"));
        fs::create_dir(&dir).expect("mkdir");
        let (img, _) = write_to_file(&tree, &opts(c), &dir);
        let m = Mount::new(&img, &dir.join("mnt")).unwrap_or_else(|e| panic!("{c:?}: mount: {e}"));
        check_files(&tree, &m.0, true);
        let caps = xattrs_of(&m.0.join("usr/bin/ping"));
        assert_eq!(caps["security.capability"], CAP_NET_RAW);
    }
}

/// A listing whose entries point at inodes far apart (a hardlink to an
/// early inode in a late directory, 40k inodes between siblings) starts a
/// new header each time the inode block changes; unsquashfs and the kernel
/// must agree. (Numbers follow table order, so the ±32767 rule of a header
/// is always met once the block rule is: a block holds a few hundred
/// inodes.)
#[test]
fn far_apart_inode_numbers_start_new_headers() {
    let mut t = FsTree::new();
    ins(&mut t, "a/first", file(b"first".to_vec()));
    let wide = t.root_mut();
    let Some(Node::Dir(a)) = wide.entries.get_mut(std::ffi::OsStr::new("a")) else {
        panic!("a")
    };
    for i in 0..40_000 {
        let n = Node::leaf(meta(0o600, 0), LeafKind::Fifo);
        a.entries.insert(format!("p{i:05}").into(), n);
    }
    let first = t.lookup(Path::new("a/first")).cloned().expect("a/first");
    ins(&mut t, "b/0-early", first);
    ins(&mut t, "b/1-late", file(b"late".to_vec()));
    let p0 = t.lookup(Path::new("a/p00000")).cloned().expect("p0");
    ins(&mut t, "b/2-early", p0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (img, info) = write_to_file(
        &t,
        &opts(SquashfsCompression::Zstd { level: 1 }),
        tmp.path(),
    );
    assert_eq!(info.inodes, 40_000 + 2 + 3);
    check_listing(&t, &img);
    if can_mount(tmp.path()) {
        let m = Mount::new(&img, &tmp.path().join("mnt")).expect("mount");
        check_files(&t, &m.0, true);
    }
}

#[test]
fn images_are_deterministic_for_any_thread_count() {
    let tree = full_tree();
    let mut r = Rng(99);
    let mut t2 = tree.clone();
    for i in 0..40 {
        let len = (r.next() % 600_000) as usize;
        ins(&mut t2, &format!("gen/{i}"), file(r.text(len)));
    }
    for c in [
        SquashfsCompression::Gzip { level: 6 },
        SquashfsCompression::Zstd { level: 3 },
    ] {
        let mut o = opts(c);
        o.threads = 1;
        let (one, info) = image(&t2, &o);
        assert!(info.fragments > 1);
        o.threads = 4;
        assert!(image(&t2, &o).0 == one, "{c:?}: threads 1 vs 4");
        o.threads = 3;
        assert!(image(&t2.clone(), &o).0 == one, "{c:?}: second write");
    }
}

/// A pinned image hash: any change to the bytes written (layout, ordering,
/// compressor settings) shows here and must be deliberate.
#[test]
fn golden_image_hash() {
    let (img, info) = image(&sample_tree(), &opts(SquashfsCompression::default()));
    assert_eq!(info.bytes_used, 700, "bytes_used");
    let hash = Sha256::digest(&img);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "7c103c5cc5a641c1a1999ac234132d40313bca1bfde2dc9f32c2ac09df125429"
    );
}

/// A tree of text files and many small files, on disk so mksquashfs reads
/// the very same bytes.
fn write_size_tree(root: &Path) {
    let mut r = Rng(0xfeed_beef);
    for d in 0..20 {
        let dir = root.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..100 {
            let len = 100 + (r.next() % 4000) as usize;
            fs::write(dir.join(format!("small{f:03}.txt")), r.text(len)).expect("write");
        }
        fs::write(dir.join("large.txt"), r.text(1 << 20)).expect("write");
    }
}

#[test]
fn size_is_within_2_percent_of_mksquashfs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    write_size_tree(&src);
    let tree = FsTree::from_host_dir(&src, None, 1_700_000_000).expect("from_host_dir");
    for (c, args) in [
        (
            SquashfsCompression::Zstd { level: 15 },
            ["-comp", "zstd", "-Xcompression-level", "15"],
        ),
        (
            SquashfsCompression::Gzip { level: 9 },
            ["-comp", "gzip", "-Xcompression-level", "9"],
        ),
    ] {
        let theirs = tmp.path().join("theirs.sqfs");
        run(Command::new("mksquashfs")
            .arg(&src)
            .arg(&theirs)
            .args(args)
            .args([
                "-noappend",
                "-quiet",
                "-all-root",
                "-processors",
                "2",
                "-b",
                "131072",
            ])
            .args(["-all-time", "1700000000", "-mkfs-time", "1700000000"]));
        let theirs = fs::metadata(&theirs).expect("stat").len();
        let (_, info) = write_to_file(&tree, &opts(c), tmp.path());
        let ratio = info.image_size as f64 / theirs as f64;
        eprintln!(
            "{c:?}: ours {} mksquashfs {theirs} ratio {ratio:.4}",
            info.image_size
        );
        assert!(
            ratio <= 1.02,
            "{c:?}: ours {} vs mksquashfs {theirs}",
            info.image_size
        );
    }
}

fn lying_tree(tmp: &Path, twins: bool) -> FsTree {
    let host = tmp.join("short");
    fs::write(&host, b"only ten b").expect("write");
    let lie = Content::Host {
        path: Arc::new(host),
        len: 300_000,
    };
    let mut t = FsTree::new();
    ins(&mut t, "ok", Node::file(meta(0o644, 0), bytes(b"fine")));
    ins(&mut t, "bad/file", Node::file(meta(0o644, 0), lie.clone()));
    if twins {
        ins(&mut t, "bad/twin", Node::file(meta(0o644, 0), lie));
    }
    t
}

#[test]
fn content_shorter_than_its_length_is_an_error_naming_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Alone (streamed) and with a same-size twin (hashed first).
    for twins in [false, true] {
        let tree = lying_tree(tmp.path(), twins);
        let err = write_squashfs(
            &tree,
            &opts(SquashfsCompression::default()),
            &mut Cursor::new(Vec::new()),
        )
        .expect_err("short content");
        match &err {
            SquashfsError::Write(WriteError::ShortContent {
                path,
                expected,
                got,
                ..
            }) => {
                assert_eq!(
                    (path.as_path(), *expected, *got),
                    (Path::new("bad/file"), 300_000, 10)
                );
            }
            other => panic!("wrong error: {other}"),
        }
        assert!(err.to_string().contains("bad/file"), "{err}");
    }
    let mut t = FsTree::new();
    let gone = Content::Host {
        path: Arc::new(tmp.path().join("missing")),
        len: 5,
    };
    ins(&mut t, "gone", Node::file(meta(0o644, 0), gone));
    let err = write_squashfs(
        &t,
        &opts(SquashfsCompression::default()),
        &mut Cursor::new(Vec::new()),
    )
    .expect_err("missing file");
    assert!(
        matches!(err, SquashfsError::Write(WriteError::Read { .. })),
        "{err}"
    );
}

#[test]
fn unrepresentable_nodes_and_bad_options_are_errors() {
    let write =
        |t: &FsTree, o: &SquashfsOptions| write_squashfs(t, o, &mut Cursor::new(Vec::new()));
    let o = opts(SquashfsCompression::default());
    let mut t = FsTree::new();
    ins(&mut t, &"n".repeat(257), file(vec![1]));
    assert!(
        write(&t, &o)
            .unwrap_err()
            .to_string()
            .contains("longer than 256")
    );
    let mut t = FsTree::new();
    let mut m = meta(0o644, 0);
    m.xattrs.insert("system.posix_acl_access".into(), vec![2]);
    ins(&mut t, "acl", Node::file(m, bytes(b"x")));
    assert!(
        write(&t, &o)
            .unwrap_err()
            .to_string()
            .contains("system.posix_acl_access")
    );
    let mut t = sample_tree();
    t.set_mtime_all(-1);
    assert!(write(&t, &o).unwrap_err().to_string().contains("mtime -1"));
    let mut t = FsTree::new();
    ins(
        &mut t,
        "d",
        Node::leaf(
            meta(0o600, 0),
            LeafKind::CharDev {
                major: 5000,
                minor: 1,
            },
        ),
    );
    assert!(write(&t, &o).unwrap_err().to_string().contains("5000:1"));
    let t = sample_tree();
    for bad in [
        SquashfsOptions {
            block_size: 1000,
            ..o.clone()
        },
        SquashfsOptions {
            block_size: 2 << 20,
            ..o.clone()
        },
        SquashfsOptions {
            compression: SquashfsCompression::Gzip { level: 0 },
            ..o.clone()
        },
        SquashfsOptions {
            compression: SquashfsCompression::Zstd { level: 23 },
            ..o.clone()
        },
        SquashfsOptions {
            mkfs_time: -5,
            ..o.clone()
        },
    ] {
        assert!(
            matches!(write(&t, &bad), Err(SquashfsError::Options(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn too_many_ids_is_an_error() {
    let mut t = FsTree::new();
    for i in 0..=65535u32 {
        let mut m = meta(0o644, 0);
        (m.uid, m.gid) = (i + 1, 0);
        t.root_mut()
            .entries
            .insert(format!("{i}").into(), Node::leaf(m, LeafKind::Fifo));
    }
    let err = write_squashfs(
        &t,
        &opts(SquashfsCompression::Zstd { level: 1 }),
        &mut Cursor::new(Vec::new()),
    )
    .expect_err("65537 ids");
    assert!(matches!(err, SquashfsError::Limit { .. }), "{err}");
}

#[test]
fn non_default_levels_write_compressor_options() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (c, want) in [
        (
            SquashfsCompression::Zstd { level: 3 },
            "compression-level 3",
        ),
        (
            SquashfsCompression::Gzip { level: 4 },
            "compression-level 4",
        ),
    ] {
        let (img, _) = write_to_file(&sample(), &opts(c), tmp.path());
        let stat = run(Command::new("unsquashfs").arg("-s").arg(&img));
        assert!(stat.to_lowercase().contains(want), "{c:?}: {stat}");
        let out = tmp.path().join(format!("out-{c:?}"));
        run(Command::new("unsquashfs")
            .arg("-q")
            .arg("-d")
            .arg(&out)
            .arg(&img));
        check_files(&sample(), &out, false);
    }
}
