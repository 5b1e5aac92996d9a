//! Readers for the differential tests: what `unsquashfs` lists, and what
//! an extraction or a kernel mount holds, checked against the tree.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::layout;
use crate::tree::testutil::run;
use crate::tree::{Content, FsTree, Inode, LeafKind, Node, WalkNode};

/// `ls -l` style permissions, as unsquashfs prints them.
fn perms(kind: char, mode: u32) -> String {
    let mut s = String::from(kind);
    for (shift, special, lower, upper) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn kind_char(node: WalkNode<'_>) -> char {
    match node.node() {
        None | Some(Node::Dir(_)) => 'd',
        Some(Node::Leaf(i)) => match i.kind {
            LeafKind::File(_) => '-',
            LeafKind::Symlink(_) => 'l',
            LeafKind::CharDev { .. } => 'c',
            LeafKind::BlockDev { .. } => 'b',
            LeafKind::Fifo => 'p',
            LeafKind::Socket => 's',
        },
    }
}

fn content_hash(c: &Content) -> [u8; 32] {
    let mut data = Vec::new();
    c.open()
        .and_then(|mut r| r.read_to_end(&mut data))
        .expect("content");
    Sha256::digest(&data).into()
}

/// Checks `unsquashfs -lln` lists exactly the tree: type, permissions,
/// owner, size or device, and symlink target of every path.
pub fn check_listing(tree: &FsTree, img: &Path) {
    let out = run(Command::new("unsquashfs")
        .env("TZ", "UTC")
        .arg("-lln")
        .arg(img));
    let mut got: Vec<String> = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let t: Vec<&str> = line.split_whitespace().collect();
        let at = t
            .iter()
            .position(|w| w.starts_with("squashfs-root"))
            .expect(line);
        // Size or "major, minor": everything between owner and the date.
        let size = t[2..at - 2].join("");
        let rest = t[at..].join(" ");
        let size = if t[0].starts_with('d') {
            String::new()
        } else {
            size
        };
        got.push(format!("{} {} {} {}", t[0], t[1], size, rest));
    }
    let want: Vec<String> = tree
        .walk()
        .map(|(path, node)| {
            let m = node.meta();
            let name = match path.as_os_str().is_empty() {
                true => "squashfs-root".to_string(),
                false => format!("squashfs-root/{}", path.display()),
            };
            let (size, suffix) = match node.node() {
                Some(Node::Leaf(i)) => match &i.kind {
                    LeafKind::File(c) => (c.len().to_string(), String::new()),
                    LeafKind::Symlink(s) => (
                        s.as_os_str().len().to_string(),
                        format!(" -> {}", s.display()),
                    ),
                    LeafKind::CharDev { major, minor } | LeafKind::BlockDev { major, minor } => {
                        // unsquashfs 4.5 lists the raw number as rdev >> 8,
                        // rdev & 0xff, which differs from the kernel's
                        // decoding for minors over 255 (extraction is right).
                        let rdev = layout::encode_dev(*major, *minor).expect("encodable");
                        (format!("{},{}", rdev >> 8, rdev & 0xff), String::new())
                    }
                    _ => ("0".into(), String::new()),
                },
                _ => (String::new(), String::new()),
            };
            format!(
                "{} {}/{} {size} {name}{suffix}",
                perms(kind_char(node), m.mode),
                m.uid,
                m.gid
            )
        })
        .collect();
    assert_eq!(got.len(), want.len(), "entry count\n{out}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

pub fn xattrs_of(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = match rustix::fs::llistxattr(p, &mut names[..]) {
        Ok(n) => n,
        // squashfs without an xattr table does not support them at all.
        Err(rustix::io::Errno::OPNOTSUPP) => 0,
        Err(e) => panic!("llistxattr {}: {e}", p.display()),
    };
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8(name.to_vec()).expect("utf-8 xattr name");
        let mut v = vec![0u8; 65536];
        let k = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..])
            .unwrap_or_else(|e| panic!("lgetxattr {} {name}: {e}", p.display()));
        v.truncate(k);
        out.insert(name, v);
    }
    out
}

/// Checks the files under `root` (an extraction or a mount) hold exactly the
/// tree: kind, mode, owner, mtime, content, target, device, xattrs, links.
pub fn check_files(tree: &FsTree, root: &Path, kernel: bool) {
    let mut groups: HashMap<*const Inode, u64> = HashMap::new();
    let mut count = 0;
    for (path, node) in tree.walk() {
        count += 1;
        let p = root.join(&path);
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let m = node.meta();
        let what = path.display().to_string();
        // A host symlink is always 0777; the kernel shows squashfs's bits.
        if kernel || !md.file_type().is_symlink() {
            assert_eq!(md.mode() & 0o7777, m.mode, "{what} mode");
        }
        assert_eq!((md.uid(), md.gid()), (m.uid, m.gid), "{what} owner");
        assert_eq!(md.mtime(), m.mtime, "{what} mtime");
        assert_eq!(xattrs_of(&p), m.xattrs, "{what} xattrs");
        let Some(Node::Leaf(i)) = node.node() else {
            assert!(md.is_dir(), "{what} is a dir");
            let d = node.as_dir().expect("dir");
            let subdirs = d
                .entries
                .values()
                .filter(|n| matches!(n, Node::Dir(_)))
                .count();
            let entries = fs::read_dir(&p).expect("read_dir").count();
            assert_eq!(entries, d.entries.len(), "{what} entries");
            if kernel {
                assert_eq!(md.nlink(), 2 + subdirs as u64, "{what} nlink");
            }
            continue;
        };
        let ino = *groups.entry(Arc::as_ptr(i)).or_insert(md.ino());
        assert_eq!(md.ino(), ino, "{what}: hardlinks share an inode");
        let ft = md.file_type();
        match &i.kind {
            LeafKind::File(c) => {
                assert!(ft.is_file(), "{what} is a file");
                assert_eq!(md.len(), c.len(), "{what} size");
                let data = fs::read(&p).expect("read");
                assert_eq!(
                    <[u8; 32]>::from(Sha256::digest(&data)),
                    content_hash(c),
                    "{what} content"
                );
            }
            LeafKind::Symlink(target) => assert_eq!(&fs::read_link(&p).expect("readlink"), target),
            LeafKind::CharDev { major, minor } | LeafKind::BlockDev { major, minor } => {
                assert!(
                    ft.is_char_device() || ft.is_block_device(),
                    "{what} is a device"
                );
                assert_eq!(
                    ft.is_char_device(),
                    matches!(i.kind, LeafKind::CharDev { .. })
                );
                assert_eq!(
                    md.rdev(),
                    rustix::fs::makedev(*major, *minor),
                    "{what} rdev"
                );
            }
            LeafKind::Fifo => assert!(ft.is_fifo(), "{what} is a fifo"),
            LeafKind::Socket => assert!(ft.is_socket(), "{what} is a socket"),
        }
    }
    let on_disk = walk_count(root);
    assert_eq!(on_disk, count, "no extra entries under {}", root.display());
}

fn walk_count(p: &Path) -> usize {
    let mut n = 1;
    if fs::symlink_metadata(p).expect("stat").is_dir() {
        for e in fs::read_dir(p).expect("read_dir") {
            n += walk_count(&e.expect("entry").path());
        }
    }
    n
}

/// Mounts an image read-only through a loop device; unmounts on drop.
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn new(img: &Path, at: &Path) -> Result<Mount, String> {
        fs::create_dir_all(at).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(img)
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Mount(at.into()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Whether root may loop-mount squashfs here: mksquashfs's own image must
/// mount, else kernel checks are skipped (with a note).
pub fn can_mount(tmp: &Path) -> bool {
    let src = tmp.join("probe-src");
    fs::create_dir_all(&src).expect("mkdir");
    let probe = tmp.join("probe.sqfs");
    run(Command::new("mksquashfs")
        .arg(&src)
        .arg(&probe)
        .args(["-noappend", "-quiet"]));
    match Mount::new(&probe, &tmp.join("probe")) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping kernel checks: cannot loop-mount squashfs: {e}");
            false
        }
    }
}
