use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tar::{EntryType, Header};

use super::testutil::{bytes, dir, meta, read, run, summary};
use super::*;

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn file(data: &[u8]) -> Node {
    Node::file(meta(0o644, 0), bytes(data))
}

fn symlink(target: &str) -> Node {
    Node::leaf(meta(0o777, 0), LeafKind::Symlink(target.into()))
}

#[test]
fn insert_creates_parents_and_merges_dirs() {
    let mut t = FsTree::new();
    t.insert(p("/a/b/c"), file(b"x")).unwrap();
    let Some(Node::Dir(a)) = t.lookup(p("a")) else {
        panic!("a missing")
    };
    assert_eq!(a.meta, Meta::root(0o755));
    t.insert(p("./a"), dir(0o700)).unwrap();
    assert_eq!(t.lookup(p("a")).unwrap().meta().mode, 0o700);
    assert!(
        t.lookup(p("a/b/c")).is_some(),
        "dir over dir keeps children"
    );
    t.insert(p("a/b"), file(b"y")).unwrap();
    assert!(t.lookup(p("a/b/c")).is_none(), "file over dir replaces it");
    assert_eq!(read(&t, "a/b"), b"y");
    assert!(matches!(
        t.insert(p("a/b/c"), file(b"z")),
        Err(TreeError::NotADirectory { .. })
    ));
    assert!(matches!(
        t.insert(p("a/../etc"), file(b"z")),
        Err(TreeError::InvalidPath { .. })
    ));
    assert!(t.remove(p("/a/b")).is_some());
    assert!(t.lookup(p("a/b")).is_none());
}

#[test]
fn parent_symlinks_resolve_inside_the_tree() {
    let mut t = FsTree::new();
    t.mkdir_p(p("usr/bin"), meta(0o755, 0)).unwrap();
    t.insert(p("bin"), symlink("usr/bin")).unwrap();
    t.insert(p("lib"), symlink("/usr/lib")).unwrap();
    t.insert(p("usr/sbin"), symlink("../bin/../bin")).unwrap();
    t.insert(p("bin/foo"), file(b"foo")).unwrap();
    t.insert(p("lib/libc.so"), file(b"libc")).unwrap();
    t.insert(p("usr/sbin/bar"), file(b"bar")).unwrap();
    assert_eq!(read(&t, "usr/bin/foo"), b"foo");
    assert_eq!(read(&t, "usr/lib/libc.so"), b"libc");
    assert_eq!(
        read(&t, "bin/bar"),
        b"bar",
        "via usr/sbin -> ../bin -> usr/bin"
    );
    assert!(
        matches!(t.lookup(p("bin")), Some(Node::Leaf(_))),
        "last component not followed"
    );
    t.insert(p("loop"), symlink("loop2")).unwrap();
    t.insert(p("loop2"), symlink("loop")).unwrap();
    assert!(matches!(
        t.insert(p("loop/x"), file(b"")),
        Err(TreeError::SymlinkLoop { .. })
    ));
    t.insert(p("up"), symlink("../../etc")).unwrap();
    assert!(matches!(
        t.insert(p("up/x"), file(b"")),
        Err(TreeError::SymlinkEscape { .. })
    ));
}

#[test]
fn walk_is_sorted_preorder_with_root_first() {
    let mut t = FsTree::new();
    for path in ["b/z", "a.txt", "a/y", "a/x", "c"] {
        t.insert(p(path), file(b"")).unwrap();
    }
    let paths: Vec<PathBuf> = t.walk().map(|(path, _)| path).collect();
    let want = ["", "a", "a/x", "a/y", "a.txt", "b", "b/z", "c"];
    assert_eq!(paths, want.iter().map(PathBuf::from).collect::<Vec<_>>());
    assert!(matches!(t.walk().next(), Some((_, WalkNode::Root(_)))));
    assert_eq!(t.file_count(), 7);
}

#[test]
fn mtime_changes_keep_hardlinks_and_graft_replaces() {
    let mut t = FsTree::new();
    let shared = Node::file(meta(0o644, 0), bytes(b"12345"));
    t.insert(p("a"), shared.clone()).unwrap();
    t.insert(p("b"), shared).unwrap();
    t.insert(
        p("c"),
        Node::file(
            Meta {
                mtime: 5,
                ..meta(0o644, 0)
            },
            bytes(b"123"),
        ),
    )
    .unwrap();
    assert_eq!(t.total_size(), 8, "hardlinked data counted once");
    t.clamp_mtime(10);
    assert_eq!(t.lookup(p("a")).unwrap().meta().mtime, 10);
    assert_eq!(t.lookup(p("c")).unwrap().meta().mtime, 5);
    let (Some(Node::Leaf(a)), Some(Node::Leaf(b))) = (t.lookup(p("a")), t.lookup(p("b"))) else {
        panic!()
    };
    assert!(Arc::ptr_eq(a, b));
    t.modify_meta(p("a"), &mut |m| m.uid = 7).unwrap();
    assert_eq!(
        t.lookup(p("b")).unwrap().meta().uid,
        7,
        "chown through a hardlink"
    );

    let mut sub = FsTree::new();
    sub.insert(p("bin/sh"), file(b"sh")).unwrap();
    t.insert(p("containers/services/x/rootfs/old"), file(b""))
        .unwrap();
    t.graft(p("containers/services/x/rootfs"), sub).unwrap();
    assert_eq!(read(&t, "containers/services/x/rootfs/bin/sh"), b"sh");
    assert!(t.lookup(p("containers/services/x/rootfs/old")).is_none());
}

/// An entry of a test layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str, u32, u32),
}

/// Writes a layer tar with GNU headers (long names via `././@LongLink`).
fn layer(dir: &tempfile::TempDir, name: &str, entries: &[E]) -> PathBuf {
    let path = dir.path().join(name);
    let mut b = tar::Builder::new(File::create(&path).unwrap());
    for e in entries {
        let mut h = Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1234);
        h.set_uid(1000);
        h.set_gid(100);
        h.set_size(0);
        match e {
            E::Dir(path, mode) => {
                h.set_entry_type(EntryType::Directory);
                h.set_mode(*mode);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            E::File(path, data) => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
            E::Sym(path, target) | E::Hard(path, target) => {
                let sym = matches!(e, E::Sym(..));
                h.set_entry_type(if sym {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                });
                b.append_link(&mut h, path, target).unwrap();
            }
            E::Char(path, major, minor) => {
                h.set_entry_type(EntryType::Char);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
        }
    }
    b.finish().unwrap();
    path
}

fn apply(t: &mut FsTree, path: &Path) -> Result<(), TreeError> {
    t.apply_layer(File::open(path).unwrap(), Arc::new(path.to_path_buf()))
}

#[test]
fn layer_entries_become_tree_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let long = format!("opt/{}/file", "n".repeat(150));
    let l1 = layer(
        &tmp,
        "l1.tar",
        &[
            E::Dir("./", 0o755),
            E::Dir("usr/bin", 0o4755),
            E::Sym("bin", "usr/bin"),
            E::File("bin/sh", b"shell"),
            E::Hard("usr/bin/sh2", "usr/bin/sh"),
            E::Char("dev/null", 1, 3),
            E::File(&long, b"long"),
        ],
    );
    let mut t = FsTree::new();
    apply(&mut t, &l1).unwrap();
    assert_eq!(
        read(&t, "usr/bin/sh"),
        b"shell",
        "bin/sh lands through the symlink"
    );
    assert_eq!(read(&t, &long), b"long");
    let Some(Node::Leaf(sh)) = t.lookup(p("usr/bin/sh")) else {
        panic!()
    };
    let Some(Node::Leaf(sh2)) = t.lookup(p("usr/bin/sh2")) else {
        panic!()
    };
    assert!(Arc::ptr_eq(sh, sh2));
    assert_eq!(
        (sh.meta.uid, sh.meta.gid, sh.meta.mtime, sh.meta.mode),
        (1000, 100, 1234, 0o644)
    );
    assert!(matches!(
        &sh.kind,
        LeafKind::File(Content::Slice { len: 5, .. })
    ));
    assert_eq!(t.lookup(p("usr/bin")).unwrap().meta().mode, 0o4755);
    let Some(Node::Leaf(null)) = t.lookup(p("dev/null")) else {
        panic!()
    };
    assert_eq!(null.kind, LeafKind::CharDev { major: 1, minor: 3 });
}

#[test]
fn whiteouts_and_opaque_dirs_ignore_entry_order() {
    let tmp = tempfile::tempdir().unwrap();
    let l1 = layer(
        &tmp,
        "l1.tar",
        &[
            E::File("etc/keep", b"k"),
            E::File("etc/gone", b"g"),
            E::File("etc/redo", b"old"),
            E::File("var/lib/old/f", b"o"),
            E::File("var/lib/old2", b"o"),
            E::File("shared", b"s"),
        ],
    );
    let l2 = layer(
        &tmp,
        "l2.tar",
        &[
            E::File("etc/redo", b"new"),
            E::File("etc/.wh.gone", b""),
            E::File("etc/.wh.redo", b""),
            E::File("var/lib/new-before", b"b"),
            E::File("var/lib/.wh..wh..opq", b""),
            E::File("var/lib/old/f2", b"f2"),
            E::Hard("link-to-lower", "shared"),
            E::File(".wh.shared", b""),
        ],
    );
    let mut t = FsTree::new();
    apply(&mut t, &l1).unwrap();
    apply(&mut t, &l2).unwrap();
    assert_eq!(read(&t, "etc/keep"), b"k");
    assert!(t.lookup(p("etc/gone")).is_none());
    assert_eq!(
        read(&t, "etc/redo"),
        b"new",
        "a whiteout does not hide its own layer"
    );
    assert_eq!(read(&t, "var/lib/new-before"), b"b");
    assert_eq!(read(&t, "var/lib/old/f2"), b"f2");
    assert!(
        t.lookup(p("var/lib/old/f")).is_none(),
        "opaque hides lower files in re-added dirs"
    );
    assert!(t.lookup(p("var/lib/old2")).is_none());
    assert_eq!(read(&t, "link-to-lower"), b"s");
    assert!(t.lookup(p("shared")).is_none());
}

#[test]
fn bad_layer_entries_name_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layer(&tmp, "bad.tar", &[E::Hard("a", "missing")]);
    let err = apply(&mut FsTree::new(), &l).unwrap_err().to_string();
    assert!(err.contains("\"a\"") && err.contains("missing"), "{err}");
    let l = layer(
        &tmp,
        "loop.tar",
        &[E::Sym("x", "y"), E::Sym("y", "x"), E::File("x/f", b"")],
    );
    let err = apply(&mut FsTree::new(), &l).unwrap_err().to_string();
    assert!(
        err.contains("x/f") && err.contains("symbolic links"),
        "{err}"
    );
}

#[test]
fn host_dir_with_hardlinks_and_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("bin")).unwrap();
    std::fs::write(d.join("bin/a"), b"aaa").unwrap();
    std::fs::hard_link(d.join("bin/a"), d.join("bin/b")).unwrap();
    std::os::unix::fs::symlink("bin/a", d.join("link")).unwrap();
    run(std::process::Command::new("chmod")
        .arg("4750")
        .arg(d.join("bin/a")));
    let manifest = "# overrides\nchown /bin/a 0 50\n\ndir /dev 0755 0 0\nnod /dev/console 0600 0 5 c 5 1\n\
                    slink /sbin bin 0 0\nchmod /bin 0700\n";
    let t = FsTree::from_host_dir(d, Some(manifest), 99).unwrap();
    let s = summary(&t);
    assert_eq!(t.root().meta.mode, 0o755);
    let want = [
        " dir 755 0:0 t=99 x={}",
        "bin dir 700 0:0 t=99 x={}",
        "bin/a file \"aaa\" link-group=bin/a 4750 0:50 t=99 x={}",
        "bin/b file \"aaa\" link-group=bin/a 4750 0:50 t=99 x={}",
        "dev dir 755 0:0 t=99 x={}",
        "dev/console CharDev { major: 5, minor: 1 } link-group=dev/console 600 0:5 t=99 x={}",
        "link Symlink(\"bin/a\") link-group=link 777 0:0 t=99 x={}",
        "sbin Symlink(\"bin\") link-group=sbin 777 0:0 t=99 x={}",
    ];
    assert_eq!(s, want);
    let err = FsTree::from_host_dir(d, Some("chown /bin 0 0\nchmod /nope 0644\n"), 0).unwrap_err();
    assert!(err.to_string().starts_with("manifest:2: "), "{err}");
    let err = FsTree::from_host_dir(d, Some("nod /x 0600 0 0 q 1 1"), 0).unwrap_err();
    assert!(err.to_string().contains("manifest:1: device type"), "{err}");
}

#[test]
fn layer_written_by_gnu_tar_pax() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("r");
    let long = format!("opt/{}", "L".repeat(150));
    std::fs::create_dir_all(r.join("opt")).unwrap();
    std::fs::write(r.join(&long), b"long").unwrap();
    std::fs::hard_link(r.join(&long), r.join("opt/short")).unwrap();
    run(std::process::Command::new("mknod")
        .arg(r.join("null"))
        .args(["c", "1", "3"]));
    run(std::process::Command::new("mkfifo").arg(r.join("fifo")));
    run(std::process::Command::new("chmod")
        .arg("2711")
        .arg(r.join("opt/short")));
    let set = "import os,sys; os.setxattr(sys.argv[1], 'trusted.smelt', b'v\\x00\\xff')";
    run(std::process::Command::new("python3")
        .args(["-c", set])
        .arg(r.join("opt/short")));
    let layer = tmp.path().join("l.tar");
    run(std::process::Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--format=pax",
            "--owner=7",
            "--group=8",
        ])
        .args(["--mtime=@1600000000.75", "-C"])
        .arg(&r)
        .arg("-cf")
        .arg(&layer)
        .arg("."));
    let mut t = FsTree::new();
    apply(&mut t, &layer).unwrap();
    let Some(Node::Leaf(a)) = t.lookup(p(&long)) else {
        panic!("long name missing")
    };
    let Some(Node::Leaf(b)) = t.lookup(p("opt/short")) else {
        panic!()
    };
    assert!(Arc::ptr_eq(a, b));
    assert_eq!(read(&t, "opt/short"), b"long");
    assert_eq!(
        (a.meta.mode, a.meta.uid, a.meta.gid, a.meta.mtime),
        (0o2711, 7, 8, 1_600_000_000)
    );
    assert_eq!(
        a.meta.xattrs.get("trusted.smelt").map(Vec::as_slice),
        Some(&b"v\x00\xff"[..])
    );
    let Some(Node::Leaf(null)) = t.lookup(p("null")) else {
        panic!()
    };
    assert_eq!(null.kind, LeafKind::CharDev { major: 1, minor: 3 });
    assert!(matches!(t.lookup(p("fifo")), Some(Node::Leaf(i)) if i.kind == LeafKind::Fifo));
}

#[test]
fn corrupted_layers_error_without_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let good = layer(
        &tmp,
        "good.tar",
        &[
            E::Dir("etc", 0o755),
            E::File("etc/passwd", b"root:x:0:0"),
            E::Sym("lib", "usr/lib"),
            E::Hard("etc/passwd2", "etc/passwd"),
            E::File(&"n/".repeat(80), b"long"),
        ],
    );
    let bytes = std::fs::read(&good).unwrap();
    let bad = tmp.path().join("bad.tar");
    let mut errors = 0;
    for i in (0..bytes.len().min(4096)).step_by(7) {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        std::fs::write(&bad, &b).unwrap();
        errors += usize::from(apply(&mut FsTree::new(), &bad).is_err());
    }
    assert!(errors > 0, "some flips must be detected (header checksums)");
}

#[test]
fn many_entries_apply_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..5000).map(|i| format!("d{}/f{i}", i % 50)).collect();
    let entries: Vec<E> = names.iter().map(|n| E::File(n, b"x")).collect();
    let l = layer(&tmp, "many.tar", &entries);
    let mut t = FsTree::new();
    apply(&mut t, &l).unwrap();
    assert_eq!(t.file_count(), 5050);
    assert_eq!(t.total_size(), 5000);
}
