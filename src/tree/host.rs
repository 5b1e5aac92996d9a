//! Trees from host directories, for `smelt image pack`.
//!
//! [`FsTree::from_host_dir`] walks a host directory without following
//! symlinks. Every entry is owned 0:0 and gets the host's permission bits
//! (including setuid/setgid/sticky) and the given mtime; the root directory is
//! always 0755 so a private temporary directory does not make a private image
//! root. Names sharing a host inode (same device and inode number) become
//! hardlinks. Host xattrs are not read. Regular files are recorded as
//! [`Content::Host`] references, read only when an output is written.
//!
//! An override manifest then adjusts what a non-root user cannot create on the
//! host. One command per line; blank lines and lines starting with `#` are
//! ignored; fields are separated by whitespace; paths are inside the image and
//! absolute; modes are octal permission bits (at most `7777`):
//!
//! ```text
//! chown PATH UID GID                         owner of an existing entry
//! chmod PATH OCTAL_MODE                      mode of an existing entry
//! dir   PATH OCTAL_MODE UID GID              create (or update) a directory
//! nod   PATH OCTAL_MODE UID GID c|b MAJOR MINOR   create a device node
//! slink PATH TARGET UID GID                  create a symlink (mode 0777)
//! ```
//!
//! `chown`/`chmod` on a hardlinked file change every name of it. Entries the
//! manifest creates get the same mtime as the walked ones. Errors read
//! `manifest:LINE: message`. Non-goals: quoting (paths cannot contain
//! whitespace), xattrs, creating regular files.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Content, Dir, FsTree, Inode, LeafKind, Meta, Node, TreeError};

type Links = HashMap<(u64, u64), Arc<Inode>>;

fn host_err(path: &Path, source: std::io::Error) -> TreeError {
    TreeError::Host {
        path: path.into(),
        source,
    }
}

/// Major and minor numbers of a Linux `dev_t`, as glibc's `gnu_dev_major`
/// and `gnu_dev_minor` split it.
pub(crate) fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

impl FsTree {
    /// The tree of host directory `dir`, then `overrides` applied (see the
    /// module doc of `host.rs`).
    pub fn from_host_dir(
        dir: &Path,
        overrides: Option<&str>,
        mtime: i64,
    ) -> Result<FsTree, TreeError> {
        let mut links = Links::new();
        let mut root = read_dir(dir, mtime, &mut links)?;
        root.meta.mode = 0o755;
        let mut tree = FsTree { root };
        if let Some(text) = overrides {
            tree.apply_manifest(text, mtime)?;
        }
        Ok(tree)
    }

    fn apply_manifest(&mut self, text: &str, mtime: i64) -> Result<(), TreeError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            self.manifest_command(&fields, mtime)
                .map_err(|message| TreeError::Manifest {
                    line: i + 1,
                    message,
                })?;
        }
        Ok(())
    }

    fn manifest_command(&mut self, f: &[&str], mtime: i64) -> Result<(), String> {
        let want = |n: usize, usage: &str| {
            if f.len() == n {
                Ok(())
            } else {
                Err(format!("expected `{usage}`, got {} fields", f.len()))
            }
        };
        let owner = |meta: &mut Meta, uid: &str, gid: &str| -> Result<(), String> {
            meta.uid = parse_id(uid)?;
            meta.gid = parse_id(gid)?;
            Ok(())
        };
        let err = |e: TreeError| e.to_string();
        match f[0] {
            "chown" => {
                want(4, "chown PATH UID GID")?;
                let (uid, gid) = (parse_id(f[2])?, parse_id(f[3])?);
                self.modify_meta(Path::new(f[1]), &mut |m| {
                    m.uid = uid;
                    m.gid = gid;
                })
                .map_err(err)
            }
            "chmod" => {
                want(3, "chmod PATH OCTAL_MODE")?;
                let mode = parse_mode(f[2])?;
                self.modify_meta(Path::new(f[1]), &mut |m| m.mode = mode)
                    .map_err(err)
            }
            "dir" => {
                want(5, "dir PATH OCTAL_MODE UID GID")?;
                let mut meta = Meta {
                    mtime,
                    ..Meta::root(parse_mode(f[2])?)
                };
                owner(&mut meta, f[3], f[4])?;
                self.insert(Path::new(f[1]), Node::Dir(Dir::new(meta)))
                    .map_err(err)
            }
            "nod" => {
                want(8, "nod PATH OCTAL_MODE UID GID c|b MAJOR MINOR")?;
                let mut meta = Meta {
                    mtime,
                    ..Meta::root(parse_mode(f[2])?)
                };
                owner(&mut meta, f[3], f[4])?;
                let (major, minor) = (parse_id(f[6])?, parse_id(f[7])?);
                let kind = match f[5] {
                    "c" => LeafKind::CharDev { major, minor },
                    "b" => LeafKind::BlockDev { major, minor },
                    other => return Err(format!("device type must be c or b, got {other:?}")),
                };
                self.insert(Path::new(f[1]), Node::leaf(meta, kind))
                    .map_err(err)
            }
            "slink" => {
                want(5, "slink PATH TARGET UID GID")?;
                let mut meta = Meta {
                    mtime,
                    ..Meta::root(0o777)
                };
                owner(&mut meta, f[3], f[4])?;
                self.insert(
                    Path::new(f[1]),
                    Node::leaf(meta, LeafKind::Symlink(f[2].into())),
                )
                .map_err(err)
            }
            other => Err(format!("unknown command {other:?}")),
        }
    }
}

fn parse_id(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| format!("invalid number {s:?}"))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("invalid octal mode {s:?}")),
    }
}

/// The directory at host path `dir`, recursively, names sorted by the map.
fn read_dir(dir: &Path, mtime: i64, links: &mut Links) -> Result<Dir, TreeError> {
    let md = fs::symlink_metadata(dir).map_err(|e| host_err(dir, e))?;
    let mut out = Dir::new(Meta {
        mtime,
        ..Meta::root(md.mode() & 0o7777)
    });
    for entry in fs::read_dir(dir).map_err(|e| host_err(dir, e))? {
        let entry = entry.map_err(|e| host_err(dir, e))?;
        let path = entry.path();
        let node = read_node(&path, mtime, links)?;
        out.entries.insert(entry.file_name(), node);
    }
    Ok(out)
}

fn read_node(path: &PathBuf, mtime: i64, links: &mut Links) -> Result<Node, TreeError> {
    let md = fs::symlink_metadata(path).map_err(|e| host_err(path, e))?;
    let ft = md.file_type();
    if ft.is_dir() {
        return Ok(Node::Dir(read_dir(path, mtime, links)?));
    }
    let key = (md.dev(), md.ino());
    if md.nlink() > 1
        && let Some(inode) = links.get(&key)
    {
        return Ok(Node::Leaf(Arc::clone(inode)));
    }
    let meta = Meta {
        mtime,
        ..Meta::root(md.mode() & 0o7777)
    };
    let kind = if ft.is_file() {
        LeafKind::File(Content::Host {
            path: Arc::new(path.clone()),
            len: md.len(),
        })
    } else if ft.is_symlink() {
        LeafKind::Symlink(fs::read_link(path).map_err(|e| host_err(path, e))?)
    } else if ft.is_char_device() || ft.is_block_device() {
        let (major, minor) = split_dev(md.rdev());
        if ft.is_char_device() {
            LeafKind::CharDev { major, minor }
        } else {
            LeafKind::BlockDev { major, minor }
        }
    } else if ft.is_fifo() {
        LeafKind::Fifo
    } else {
        LeafKind::Socket
    };
    let inode = Arc::new(Inode { meta, kind });
    if md.nlink() > 1 {
        links.insert(key, Arc::clone(&inode));
    }
    Ok(Node::Leaf(inode))
}
