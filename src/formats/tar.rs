//! Deterministic tar writer from an [`FsTree`], for `-f tar` outputs and the
//! layers `smelt image pack` builds.
//!
//! Entries follow [`FsTree::walk`] order (the root first, as `./`; other
//! names relative, directories with a trailing `/`). Headers are POSIX ustar
//! with numeric uid/gid only (user and group names left empty), the mtime
//! from the tree (the caller clamps), and PAX extended headers (POSIX.1-2001
//! `pax` format, entry type `x`) for names or link targets over 100 bytes and
//! for xattrs (`SCHILY.xattr.NAME`, as GNU tar and containers/storage write
//! them). The PAX header's own name is the fixed `././@PaxHeader` so it
//! carries no pid or time. A hardlinked file's data goes with its first name;
//! later names are `Link` entries pointing at it.
//!
//! Not written: sockets (tar has no type for them; GNU tar skips them too).
//! Negative mtimes are errors.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tar::{EntryType, Header};

use super::{CountingWriter, IO_BUFFER, WriteError, copy_content};
use crate::tree::{FsTree, Inode, LeafKind, Meta, Node, WalkNode};

/// Bytes of a ustar `name` or `linkname` field.
const NAME_FIELD: usize = 100;
/// Name of every PAX extended header entry (GNU tar's `--pax-option` style
/// without the `%p` pid, for reproducibility).
const PAX_NAME: &[u8] = b"././@PaxHeader";

/// Options for [`write_tar`].
#[derive(Clone, Debug, Default)]
pub struct TarOptions {
    /// Omit the `./` entry for the root directory.
    pub skip_root: bool,
}

/// Writes `tree` as a tar archive (with the two zero end blocks) to `out`;
/// returns the bytes written.
pub fn write_tar(tree: &FsTree, out: impl Write, opts: &TarOptions) -> Result<u64, WriteError> {
    let mut builder = tar::Builder::new(BufWriter::with_capacity(
        IO_BUFFER,
        CountingWriter::new(out),
    ));
    let mut first_names: HashMap<*const Inode, PathBuf> = HashMap::new();
    for (path, node) in tree.walk() {
        let root = path.as_os_str().is_empty();
        if root && opts.skip_root {
            continue;
        }
        if let WalkNode::Node(Node::Leaf(i)) = node
            && matches!(i.kind, LeafKind::Socket)
        {
            continue;
        }
        write_entry(&mut builder, &path, node, &mut first_names)?;
    }
    let io = |source| WriteError::Io {
        path: "tar end blocks".into(),
        source,
    };
    let mut buffered = builder.into_inner().map_err(io)?;
    buffered.flush().map_err(io)?;
    let counter = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    Ok(counter.count())
}

fn write_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    node: WalkNode<'_>,
    first_names: &mut HashMap<*const Inode, PathBuf>,
) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: path.into(),
        source,
    };
    let meta = node.meta();
    let mut h = Header::new_ustar();
    set_meta(&mut h, meta, path)?;
    let mut name = path.as_os_str().as_encoded_bytes().to_vec();
    let mut link: Option<Vec<u8>> = None;
    let mut content = None;
    match node {
        WalkNode::Root(_) | WalkNode::Node(Node::Dir(_)) => {
            h.set_entry_type(EntryType::Directory);
            if name.is_empty() {
                name.extend_from_slice(b".");
            }
            name.push(b'/');
        }
        WalkNode::Node(Node::Leaf(inode)) => {
            let ptr = Arc::as_ptr(inode);
            if let Some(first) = first_names.get(&ptr) {
                h.set_entry_type(EntryType::Link);
                link = Some(first.as_os_str().as_encoded_bytes().to_vec());
            } else {
                first_names.insert(ptr, path.to_path_buf());
                match &inode.kind {
                    LeafKind::File(c) => {
                        h.set_entry_type(EntryType::Regular);
                        h.set_size(c.len());
                        content = Some(c);
                    }
                    LeafKind::Symlink(t) => {
                        h.set_entry_type(EntryType::Symlink);
                        link = Some(t.as_os_str().as_encoded_bytes().to_vec());
                    }
                    LeafKind::CharDev { major, minor } | LeafKind::BlockDev { major, minor } => {
                        let char = matches!(inode.kind, LeafKind::CharDev { .. });
                        h.set_entry_type(if char {
                            EntryType::Char
                        } else {
                            EntryType::Block
                        });
                        h.set_device_major(*major).map_err(io)?;
                        h.set_device_minor(*minor).map_err(io)?;
                    }
                    LeafKind::Fifo => h.set_entry_type(EntryType::Fifo),
                    LeafKind::Socket => return Ok(()),
                }
            }
        }
    }
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if name.len() > NAME_FIELD {
        pax.push(("path".into(), name.clone()));
    }
    h.as_old_mut().name[..name.len().min(NAME_FIELD)]
        .copy_from_slice(&name[..name.len().min(NAME_FIELD)]);
    if let Some(link) = &link {
        if link.len() > NAME_FIELD {
            pax.push(("linkpath".into(), link.clone()));
        }
        let n = link.len().min(NAME_FIELD);
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    }
    for (k, v) in &meta.xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    if !pax.is_empty() {
        write_pax(builder, &pax).map_err(io)?;
    }
    h.set_cksum();
    match content {
        None => builder.append(&h, std::io::empty()).map_err(io),
        Some(c) => {
            builder.append(&h, std::io::empty()).map_err(io)?;
            // `append` with an empty reader wrote only the header; stream the
            // data ourselves so a short source is an error, then pad to 512.
            let w = builder.get_mut();
            let n = copy_content(c, path, w)?;
            let pad = (n.next_multiple_of(512) - n) as usize;
            w.write_all(&[0u8; 512][..pad]).map_err(io)
        }
    }
}

fn set_meta(h: &mut Header, meta: &Meta, path: &Path) -> Result<(), WriteError> {
    let mtime = u64::try_from(meta.mtime).map_err(|_| WriteError::Unrepresentable {
        path: path.into(),
        what: format!("negative mtime {}", meta.mtime),
        format: "tar",
    })?;
    h.set_mode(meta.mode & 0o7777);
    h.set_uid(meta.uid.into());
    h.set_gid(meta.gid.into());
    h.set_mtime(mtime);
    h.set_size(0);
    Ok(())
}

/// Writes one PAX extended header entry holding `records`
/// (`"LEN KEY=VALUE\n"`, LEN counting the whole record, its digits included).
fn write_pax<W: Write>(
    builder: &mut tar::Builder<W>,
    records: &[(String, Vec<u8>)],
) -> std::io::Result<()> {
    let mut data = Vec::new();
    for (k, v) in records {
        let body = k.len() + v.len() + 3; // space, '=', newline
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut h = Header::new_ustar();
    h.as_old_mut().name[..PAX_NAME.len()].copy_from_slice(PAX_NAME);
    h.set_entry_type(EntryType::XHeader);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    builder.append(&h, data.as_slice())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::tree::testutil::{run, sample_tree, summary};

    fn tar_file(tree: &FsTree, dir: &Path) -> PathBuf {
        let path = dir.join("t.tar");
        let n = write_tar(
            tree,
            std::fs::File::create(&path).unwrap(),
            &TarOptions::default(),
        )
        .unwrap();
        assert_eq!(n, std::fs::metadata(&path).unwrap().len());
        assert_eq!(n % 512, 0);
        path
    }

    #[test]
    fn round_trips_through_apply_layer() {
        let tree = sample_tree();
        let tmp = tempfile::tempdir().unwrap();
        let path = tar_file(&tree, tmp.path());
        let mut back = FsTree::new();
        back.apply_layer(std::fs::File::open(&path).unwrap(), Arc::new(path.clone()))
            .unwrap();
        assert_eq!(summary(&back), summary(&tree));
    }

    #[test]
    fn gnu_tar_lists_numeric_sorted_entries() {
        let tree = sample_tree();
        let tmp = tempfile::tempdir().unwrap();
        let path = tar_file(&tree, tmp.path());
        let list = run(Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&path));
        let lines: Vec<&str> = list.lines().collect();
        assert!(
            lines[0].starts_with("drwxr-xr-x 0/0") && lines[0].ends_with(" ./"),
            "{list}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("-rwsr-xr-x 0/0") && l.ends_with(" bin/su")),
            "{list}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("hrw-r--r-- 1000/1000")
                && l.ends_with("home/user/b link to etc/a"))
        );
        assert!(lines.iter().any(|l| l.starts_with("crw-rw-rw- 0/0")
            && l.contains("1,3")
            && l.ends_with("dev/null")));
        assert!(
            lines.iter().any(|l| l.ends_with(&"f".repeat(90))),
            "long name via PAX: {list}"
        );
        assert!(lines.iter().all(|l| l.contains("2023-11-14")), "{list}");
        assert_eq!(lines.len(), tree.file_count() + 1);
        let xattrs = run(Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-xvf"])
            .arg(&path)
            .current_dir(tmp.path()));
        assert!(xattrs.contains("usr/bin/ping"));
        let verbose = run(Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-tvvf"])
            .arg(&path));
        assert!(verbose.contains("x: 8 security.capability"), "{verbose}");
    }

    #[test]
    fn deterministic_and_refuses_negative_mtime() {
        let tree = sample_tree();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_tar(&tree, &mut a, &TarOptions::default()).unwrap();
        write_tar(&tree.clone(), &mut b, &TarOptions::default()).unwrap();
        assert_eq!(a, b);
        let mut neg = tree;
        neg.set_mtime_all(-5);
        let err = write_tar(&neg, std::io::sink(), &TarOptions::default()).unwrap_err();
        assert!(err.to_string().contains("negative mtime -5"), "{err}");
    }
}
