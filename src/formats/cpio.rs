//! SVR4 "newc" cpio writer (magic `070701`), the format the Linux kernel
//! unpacks as an initramfs (Documentation/driver-api/early-userspace/
//! buffer-format.rst).
//!
//! Layout per entry: a 110-byte ASCII header of 8-hex-digit fields, the name
//! with its NUL, padding to 4 bytes, the data, padding to 4 bytes; the archive
//! ends with an entry named `TRAILER!!!`. Entries follow [`FsTree::walk`]
//! order, so a directory always precedes its contents; the root is written as
//! `.` (as `find . | cpio -o` does: the kernel then applies its mode and owner
//! to `/`), other names have no leading `/`.
//!
//! Inode numbers are assigned from 1 in walk order. Hardlinked files share one
//! number and carry their data on the FIRST name only, later names having
//! size 0: in the kernel's init/initramfs.c `do_name()`, `maybe_link()` makes
//! the first name of an (ino, dev) set with nlink >= 2 a new file (opened
//! O_TRUNC) and links later names to it, opening them without O_TRUNC and
//! truncating only when their body_len is non-zero, so the first name's data
//! survives. GNU cpio defers size-0 links and links them at the end, so it
//! reads this layout too. Symlinks are never hardlinked (each carries its
//! target). The `check` field is 0 (it is only meaningful for `070702`).
//!
//! Limits (errors): files of 4 GiB or more, mtimes outside 0..2^32, names
//! longer than `PATH_MAX` (4096, the kernel's limit).

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use super::{CountingWriter, IO_BUFFER, WriteError, copy_content};
use crate::tree::{FsTree, Inode, LeafKind, Node, WalkNode};

const MAGIC: &[u8; 6] = b"070701";
/// Bytes of the fixed ASCII header: magic + 13 fields of 8 hex digits.
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";
/// Longest name including the NUL the kernel accepts (`PATH_MAX`).
const MAX_NAME: usize = 4096;

const S_IFSOCK: u32 = 0o140000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFBLK: u32 = 0o060000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;

/// Options for [`write_newc`].
#[derive(Clone, Debug, Default)]
pub struct CpioOptions {
    /// Omit the `.` entry for the root directory.
    pub skip_root: bool,
}

/// One newc header; field meanings from the format's definition in
/// buffer-format.rst. `devmajor`/`devminor` are always 0: the archive is one
/// filesystem, and the kernel keys hardlinks on them together with `ino`.
struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdevmajor: u32,
    rdevminor: u32,
}

impl Header {
    fn write(&self, name: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        let mut h = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        h.extend_from_slice(MAGIC);
        let namesize = name.len() as u32 + 1;
        let fields = [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            0,
            0,
            self.rdevmajor,
            self.rdevminor,
            namesize,
            0,
        ];
        for f in fields {
            write!(h, "{f:08X}")?;
        }
        h.extend_from_slice(name);
        h.push(0);
        h.resize(h.len().next_multiple_of(4), 0);
        out.write_all(&h)
    }
}

/// Writes `tree` as a newc archive to `out`; returns the bytes written.
pub fn write_newc(tree: &FsTree, out: impl Write, opts: &CpioOptions) -> Result<u64, WriteError> {
    let mut links: HashMap<*const Inode, u32> = HashMap::new();
    for (_, node) in tree.walk() {
        if let WalkNode::Node(Node::Leaf(i)) = node {
            *links.entry(Arc::as_ptr(i)).or_default() += 1;
        }
    }
    let mut out = BufWriter::with_capacity(IO_BUFFER, CountingWriter::new(out));
    let mut inos: HashMap<*const Inode, u32> = HashMap::new();
    let mut next_ino = 1u32;
    for (path, node) in tree.walk() {
        if path.as_os_str().is_empty() && opts.skip_root {
            continue;
        }
        let name = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path.as_path()
        };
        write_entry(name, node, &links, &mut inos, &mut next_ino, &mut out)?;
    }
    let io = |source| WriteError::Io {
        path: TRAILER.into(),
        source,
    };
    let trailer = Header {
        ino: 0,
        mode: 0,
        uid: 0,
        gid: 0,
        nlink: 1,
        mtime: 0,
        filesize: 0,
        rdevmajor: 0,
        rdevminor: 0,
    };
    trailer.write(TRAILER.as_bytes(), &mut out).map_err(io)?;
    out.flush().map_err(io)?;
    let counter = out.into_inner().map_err(|e| io(e.into_error()))?;
    Ok(counter.count())
}

fn write_entry(
    name: &Path,
    node: WalkNode<'_>,
    links: &HashMap<*const Inode, u32>,
    inos: &mut HashMap<*const Inode, u32>,
    next_ino: &mut u32,
    out: &mut impl Write,
) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: name.into(),
        source,
    };
    let unrep = |what: &str| WriteError::Unrepresentable {
        path: name.into(),
        what: what.into(),
        format: "cpio newc",
    };
    let name_bytes = name.as_os_str().as_encoded_bytes();
    if name_bytes.len() + 1 > MAX_NAME {
        return Err(unrep("a name longer than 4095 bytes"));
    }
    let meta = node.meta();
    let mtime = u32::try_from(meta.mtime).map_err(|_| unrep(&format!("mtime {}", meta.mtime)))?;
    let mut h = Header {
        ino: 0,
        mode: meta.mode & 0o7777,
        uid: meta.uid,
        gid: meta.gid,
        nlink: 1,
        mtime,
        filesize: 0,
        rdevmajor: 0,
        rdevminor: 0,
    };
    let take_ino = |next: &mut u32| {
        let ino = *next;
        *next = next.wrapping_add(1);
        ino
    };
    let inode = match node {
        WalkNode::Root(d) | WalkNode::Node(Node::Dir(d)) => {
            h.ino = take_ino(next_ino);
            h.mode |= S_IFDIR;
            let subdirs = d
                .entries
                .values()
                .filter(|n| matches!(n, Node::Dir(_)))
                .count();
            h.nlink = 2 + subdirs as u32;
            return h.write(name_bytes, out).map_err(io);
        }
        WalkNode::Node(Node::Leaf(i)) => i,
    };
    if let LeafKind::Symlink(target) = &inode.kind {
        let target = target.as_os_str().as_encoded_bytes();
        h.ino = take_ino(next_ino);
        h.mode |= S_IFLNK;
        h.filesize = target.len() as u32;
        h.write(name_bytes, out).map_err(io)?;
        out.write_all(target).map_err(io)?;
        return pad(target.len() as u64, out).map_err(io);
    }
    let ptr = Arc::as_ptr(inode);
    h.nlink = links.get(&ptr).copied().unwrap_or(1);
    let first = !inos.contains_key(&ptr);
    h.ino = *inos.entry(ptr).or_insert_with(|| take_ino(next_ino));
    h.mode |= match &inode.kind {
        LeafKind::File(_) => S_IFREG,
        LeafKind::CharDev { .. } => S_IFCHR,
        LeafKind::BlockDev { .. } => S_IFBLK,
        LeafKind::Fifo => S_IFIFO,
        LeafKind::Socket => S_IFSOCK,
        LeafKind::Symlink(_) => S_IFLNK,
    };
    if let LeafKind::CharDev { major, minor } | LeafKind::BlockDev { major, minor } = inode.kind {
        (h.rdevmajor, h.rdevminor) = (major, minor);
    }
    match &inode.kind {
        LeafKind::File(content) if first => {
            h.filesize =
                u32::try_from(content.len()).map_err(|_| unrep("a file of 4 GiB or more"))?;
            h.write(name_bytes, out).map_err(io)?;
            let n = copy_content(content, name, out)?;
            pad(n, out).map_err(io)
        }
        _ => h.write(name_bytes, out).map_err(io),
    }
}

fn pad(len: u64, out: &mut impl Write) -> std::io::Result<()> {
    let n = (len.next_multiple_of(4) - len) as usize;
    out.write_all(&[0u8; 4][..n])
}

/// One entry of a newc archive, as [`read_newc`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpioEntry {
    pub name: String,
    /// File type and permission bits (`S_IFREG | 0644`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub data: Vec<u8>,
}

impl CpioEntry {
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == S_IFREG
    }
}

/// Errors from [`read_newc`], naming the byte offset in the archive.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpioReadError {
    #[error(
        "cpio archive is truncated: {what} at byte {offset} needs {need} bytes, archive has {len}"
    )]
    Truncated {
        what: &'static str,
        offset: u64,
        need: u64,
        len: u64,
    },
    #[error("bad cpio archive at byte {offset}: {what}")]
    Bad { offset: u64, what: String },
}

/// Reads a whole uncompressed newc archive (magic `070701`) up to its
/// `TRAILER!!!`, which must end it but for zero padding. A reader for the
/// small archives smelt recognises (the config initrd); it holds every
/// entry's data in memory. Hardlink sets are returned as written.
pub fn read_newc(bytes: &[u8]) -> Result<Vec<CpioEntry>, CpioReadError> {
    let take = |offset: usize, need: usize, what| {
        bytes
            .get(offset..offset.saturating_add(need))
            .ok_or(CpioReadError::Truncated {
                what,
                offset: offset as u64,
                need: need as u64,
                len: bytes.len() as u64,
            })
    };
    let bad = |offset: usize, what: String| CpioReadError::Bad {
        offset: offset as u64,
        what,
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let h = take(at, HEADER_LEN, "header")?;
        if &h[..6] != MAGIC {
            return Err(bad(
                at,
                format!(
                    "magic {:?}, not \"070701\"",
                    String::from_utf8_lossy(&h[..6])
                ),
            ));
        }
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            let o = 6 + 8 * i;
            let text = std::str::from_utf8(&h[o..o + 8]).ok();
            *v = text
                .and_then(|t| u32::from_str_radix(t, 16).ok())
                .ok_or_else(|| bad(at + o, "header field is not 8 hex digits".into()))?;
        }
        let (mode, uid, gid, mtime, filesize, namesize) = (f[1], f[2], f[3], f[5], f[6], f[11]);
        let name_at = at + HEADER_LEN;
        if namesize == 0 || namesize as usize > MAX_NAME {
            return Err(bad(at + 94, format!("name size {namesize}")));
        }
        let name = take(name_at, namesize as usize, "name")?;
        let (last, name) = name.split_last().unwrap_or((&1, &[]));
        if *last != 0 || name.contains(&0) {
            return Err(bad(name_at, "name is not NUL-terminated".into()));
        }
        let name = std::str::from_utf8(name)
            .map_err(|_| bad(name_at, "name is not UTF-8".into()))?
            .to_string();
        let data_at = (name_at + namesize as usize).next_multiple_of(4);
        let data = take(data_at, filesize as usize, "data")?.to_vec();
        at = (data_at + filesize as usize).next_multiple_of(4);
        if name == TRAILER {
            if let Some(i) = bytes
                .get(at.min(bytes.len())..)
                .and_then(|t| t.iter().position(|&b| b != 0))
            {
                return Err(bad(at + i, "data after the trailer".into()));
            }
            return Ok(out);
        }
        out.push(CpioEntry {
            name,
            mode,
            uid,
            gid,
            mtime,
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::process::Command;

    use super::*;
    use crate::tree::testutil::{run, sample_tree};

    #[test]
    fn gnu_cpio_extracts_what_we_wrote() {
        let tree = sample_tree();
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("a.cpio");
        let n = write_newc(
            &tree,
            std::fs::File::create(&archive).unwrap(),
            &CpioOptions::default(),
        )
        .unwrap();
        assert_eq!(n, std::fs::metadata(&archive).unwrap().len());
        assert_eq!(n % 4, 0);
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        run(Command::new("cpio")
            .args(["-idm", "--no-absolute-filenames", "--quiet", "-F"])
            .arg(&archive)
            .current_dir(&out));
        let md = |p: &str| std::fs::symlink_metadata(out.join(p)).unwrap();
        assert_eq!(
            std::fs::read(out.join("bin/su")).unwrap(),
            b"#!/bin/sh\necho su\n"
        );
        assert_eq!(md("bin/su").permissions().mode() & 0o7777, 0o4755);
        assert_eq!(std::fs::read(out.join("etc/a")).unwrap(), b"shared data");
        assert_eq!(
            std::fs::read(out.join("home/user/b")).unwrap(),
            b"shared data"
        );
        assert_eq!(
            md("etc/a").ino(),
            md("home/user/b").ino(),
            "hardlink shares an inode"
        );
        assert_eq!(
            (md("etc/a").uid(), md("etc/a").gid(), md("etc/a").nlink()),
            (1000, 1000, 2)
        );
        assert_eq!(md("etc/empty").len(), 0);
        assert_eq!(
            std::fs::read_link(out.join("sbin")).unwrap(),
            Path::new("bin")
        );
        assert!(md("dev/null").file_type().is_char_device());
        assert_eq!(md("dev/null").rdev(), 0x103);
        assert!(md("dev/sda").file_type().is_block_device());
        assert!(md("run/fifo").file_type().is_fifo());
        assert_eq!(md("bin/su").mtime(), 1_700_000_000);
        let long = format!("usr/share/{}/{}", "d".repeat(80), "f".repeat(90));
        assert_eq!(std::fs::read(out.join(long)).unwrap(), b"long");
    }

    #[test]
    fn listing_and_determinism() {
        let tree = sample_tree();
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_newc(&tree, &mut a, &CpioOptions::default()).unwrap();
        write_newc(&tree.clone(), &mut b, &CpioOptions::default()).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with(b"070701"));
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("a.cpio");
        std::fs::write(&archive, &a).unwrap();
        let list = run(Command::new("cpio")
            .args(["-itv", "--quiet", "--numeric-uid-gid", "-F"])
            .arg(&archive));
        let lines: Vec<&str> = list.lines().collect();
        assert!(
            lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" ."),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with(" bin"));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("-rwsr-xr-x") && l.ends_with(" bin/su")),
            "{list}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("crw-rw-rw-")
                && l.contains("1,")
                && l.ends_with("dev/null"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("sbin -> bin"))
        );
        assert_eq!(lines.len(), tree.file_count() + 1);
    }

    /// (name, ino, nlink, filesize) of every entry, parsed independently.
    fn parse(a: &[u8]) -> Vec<(String, u32, u32, u32)> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let h = &a[pos..pos + HEADER_LEN];
            assert_eq!(&h[..6], MAGIC);
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (namesize, filesize) = (field(11) as usize, field(6));
            let name =
                String::from_utf8(a[pos + HEADER_LEN..pos + HEADER_LEN + namesize - 1].to_vec())
                    .unwrap();
            pos = (pos + HEADER_LEN + namesize).next_multiple_of(4);
            pos = (pos + filesize as usize).next_multiple_of(4);
            if name == TRAILER {
                assert_eq!(pos, a.len());
                return out;
            }
            out.push((name, field(0), field(4), filesize));
        }
    }

    #[test]
    fn hardlink_data_rides_on_the_first_name() {
        let mut a = Vec::new();
        write_newc(&sample_tree(), &mut a, &CpioOptions { skip_root: true }).unwrap();
        let entries = parse(&a);
        assert_eq!(entries[0].0, "bin", "no root entry with skip_root");
        let get = |n: &str| entries.iter().find(|e| e.0 == n).unwrap().clone();
        let (first, second) = (get("etc/a"), get("home/user/b"));
        assert_eq!((first.2, first.3), (2, 11));
        assert_eq!((second.1, second.2, second.3), (first.1, 2, 0));
        let mut inos: Vec<u32> = entries.iter().map(|e| e.1).collect();
        inos.sort();
        inos.dedup();
        assert_eq!(
            inos.len(),
            entries.len() - 1,
            "only the hardlink shares an ino"
        );
        assert_eq!(get("bin").2, 2);
        assert_eq!(get("usr").2, 4, "usr has bin and share");
    }

    #[test]
    fn oversize_mtime_is_an_error() {
        let mut tree = sample_tree();
        tree.set_mtime_all(-1);
        let err = write_newc(&tree, std::io::sink(), &CpioOptions::default()).unwrap_err();
        assert!(err.to_string().contains("mtime -1"), "{err}");
    }

    #[test]
    fn reader_reads_what_we_wrote_and_names_bad_bytes() {
        let mut a = Vec::new();
        write_newc(&sample_tree(), &mut a, &CpioOptions::default()).unwrap();
        let entries = read_newc(&a).unwrap();
        assert_eq!(entries[0].name, ".");
        assert!(entries[0].is_dir());
        let su = entries.iter().find(|e| e.name == "bin/su").unwrap();
        assert!(su.is_file());
        assert_eq!(su.data, b"#!/bin/sh\necho su\n");
        let mut b = a.clone();
        b[0] = b'1';
        assert_eq!(
            read_newc(&b).unwrap_err().to_string(),
            "bad cpio archive at byte 0: magic \"170701\", not \"070701\""
        );
        let mut b = a.clone();
        b[6 + 8] = b'x';
        assert_eq!(
            read_newc(&b).unwrap_err().to_string(),
            "bad cpio archive at byte 14: header field is not 8 hex digits"
        );
        assert!(matches!(
            read_newc(&a[..a.len() - 4]),
            Err(CpioReadError::Truncated { .. })
        ));
        let mut b = a.clone();
        b.extend_from_slice(b"junk");
        assert!(
            read_newc(&b)
                .unwrap_err()
                .to_string()
                .contains("data after the trailer")
        );
    }

    #[test]
    fn reader_survives_random_damage() {
        let mut a = Vec::new();
        write_newc(&sample_tree(), &mut a, &CpioOptions::default()).unwrap();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut b = a.clone();
            let at = (next() % b.len() as u64) as usize;
            b[at] = next() as u8;
            let cut = (next() % (b.len() as u64 + 1)) as usize;
            let _ = read_newc(&b);
            let _ = read_newc(&b[..cut]);
        }
    }
}
