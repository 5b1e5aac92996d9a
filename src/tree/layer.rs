//! OCI layer application: a layer tar changes an [`FsTree`] as the OCI image
//! spec's `layer.md` ("Applying Changesets", "Whiteouts") describes.
//!
//! - `.wh.NAME` deletes NAME as it came from lower layers; an entry the same
//!   layer adds under that name is kept whatever the order in the tar.
//! - `.wh..wh..opq` in a directory hides all of its lower contents but not
//!   what this layer adds there, again independent of entry order: opaque
//!   directories are pruned once the whole layer has been read. Other
//!   `.wh..wh.` names (aufs hardlink bookkeeping) are ignored.
//! - Hardlinks (`Link`) name a path already in the tree, from this layer or a
//!   lower one, and share its inode.
//! - Regular files become [`Content::Slice`] ranges of `source`, so the reader
//!   given to [`FsTree::apply_layer`] must be that uncompressed file read from
//!   offset 0.
//! - PAX `SCHILY.xattr.*` records become xattrs; PAX `mtime` (integer part),
//!   `uid`, `gid`, `path`, `linkpath` and `size`, and GNU long names, are
//!   honoured (the last five by the `tar` crate).
//!
//! Entry paths must stay inside the root: `..` components and absolute
//! paths are errors naming the entry.
//!
//! Not supported (errors): GNU sparse files, hardlinks to directories,
//! unknown entry types. Global PAX headers are ignored.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tar::EntryType;

use super::{Content, Dir, FsTree, LeafKind, Meta, Node, TreeError, split_path};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// aufs bookkeeping names (`.wh..wh.plnk`, `.wh..wh.aufs`): not whiteouts.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
const XATTR_PREFIX: &str = "SCHILY.xattr.";

/// What one layer did so far, for order-independent whiteout handling.
#[derive(Default)]
struct LayerState {
    /// Resolved paths this layer added.
    added: HashSet<Vec<OsString>>,
    /// Resolved directories this layer marked opaque.
    opaque: Vec<Vec<OsString>>,
    /// Where the tar starts inside `source` (non-zero for a tar nested in
    /// another, like a kernel image's `kernel.tar`).
    base_offset: u64,
}

fn layer_err(entry: &Path, message: impl Into<String>) -> TreeError {
    TreeError::Layer {
        entry: entry.into(),
        message: message.into(),
    }
}

impl FsTree {
    /// Applies one OCI layer (an uncompressed tar stream) on top of the tree;
    /// see the module doc of `layer.rs` for the semantics. `source` is the
    /// uncompressed tar file that `tar` reads from its start: file contents
    /// are recorded as ranges of it, not copied.
    pub fn apply_layer(&mut self, tar: impl Read, source: Arc<PathBuf>) -> Result<(), TreeError> {
        self.apply_layer_at(tar, source, 0)
    }

    /// Like [`apply_layer`](Self::apply_layer) for a tar that starts at byte
    /// `base_offset` of `source` (a tarball stored as a file inside a layer).
    pub fn apply_layer_at(
        &mut self,
        tar: impl Read,
        source: Arc<PathBuf>,
        base_offset: u64,
    ) -> Result<(), TreeError> {
        let mut archive = tar::Archive::new(tar);
        let mut state = LayerState {
            base_offset,
            ..LayerState::default()
        };
        for entry in archive.entries().map_err(TreeError::LayerIo)? {
            let mut entry = entry.map_err(TreeError::LayerIo)?;
            let path = entry
                .path()
                .map_err(|e| layer_err(Path::new("?"), e.to_string()))?
                .into_owned();
            self.apply_entry(&mut entry, &path, &source, &mut state)?;
        }
        for dir in std::mem::take(&mut state.opaque) {
            if let Some(d) = self.dir_mut(&dir) {
                prune_lower(d, &mut dir.clone(), &state.added);
            }
        }
        Ok(())
    }

    fn dir_mut(&mut self, comps: &[OsString]) -> Option<&mut Dir> {
        if comps.is_empty() {
            return Some(&mut self.root);
        }
        match self.get_mut(comps)? {
            Node::Dir(d) => Some(d),
            Node::Leaf(_) => None,
        }
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        source: &Arc<PathBuf>,
        state: &mut LayerState,
    ) -> Result<(), TreeError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        // Layers hold relative paths; an absolute one is a crafted or broken
        // archive, refused like `..` rather than silently re-rooted.
        if path.is_absolute() {
            return Err(layer_err(path, "absolute path in a layer"));
        }
        split_path(path).map_err(|e| layer_err(path, e.to_string()))?;
        if let Some(name) = path.file_name().map(OsStrExt::as_bytes)
            && name.starts_with(WHITEOUT_PREFIX)
        {
            return self.apply_whiteout(path, name, state);
        }
        let comps = self
            .resolve(path, false)
            .map_err(|e| layer_err(path, e.to_string()))?;
        let meta = entry_meta(entry, path)?;
        let node = match kind {
            EntryType::Directory => Node::Dir(Dir::new(meta)),
            EntryType::Regular | EntryType::Continuous => Node::file(
                meta,
                Content::Slice {
                    file: Arc::clone(source),
                    offset: state.base_offset + entry.raw_file_position(),
                    len: entry.size(),
                },
            ),
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| layer_err(path, e.to_string()))?
                    .ok_or_else(|| layer_err(path, "symlink without a target"))?;
                Node::leaf(meta, LeafKind::Symlink(target.into_owned()))
            }
            EntryType::Link => self.hardlink_target(entry, path)?,
            EntryType::Char | EntryType::Block => {
                let h = entry.header();
                let major = h
                    .device_major()
                    .ok()
                    .flatten()
                    .ok_or_else(|| layer_err(path, "bad device major"))?;
                let minor = h
                    .device_minor()
                    .ok()
                    .flatten()
                    .ok_or_else(|| layer_err(path, "bad device minor"))?;
                let kind = if kind == EntryType::Char {
                    LeafKind::CharDev { major, minor }
                } else {
                    LeafKind::BlockDev { major, minor }
                };
                Node::leaf(meta, kind)
            }
            EntryType::Fifo => Node::leaf(meta, LeafKind::Fifo),
            EntryType::GNUSparse => {
                return Err(layer_err(path, "GNU sparse files are not supported"));
            }
            other => {
                return Err(layer_err(
                    path,
                    format!("unsupported tar entry type {:?}", other.as_byte() as char),
                ));
            }
        };
        self.insert_at(&comps, node, path)
            .map_err(|e| layer_err(path, e.to_string()))?;
        state.added.insert(comps);
        Ok(())
    }

    fn hardlink_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        path: &Path,
    ) -> Result<Node, TreeError> {
        let target = entry
            .link_name()
            .map_err(|e| layer_err(path, e.to_string()))?
            .ok_or_else(|| layer_err(path, "hardlink without a target"))?;
        let comps = self
            .resolve(&target, false)
            .map_err(|e| layer_err(path, e.to_string()))?;
        match self.get(&comps) {
            Some(Node::Leaf(inode)) => Ok(Node::Leaf(Arc::clone(inode))),
            Some(Node::Dir(_)) => Err(layer_err(
                path,
                format!("hardlink to directory {}", target.display()),
            )),
            None => Err(layer_err(
                path,
                format!("hardlink target {} not found", target.display()),
            )),
        }
    }

    fn apply_whiteout(
        &mut self,
        path: &Path,
        name: &[u8],
        state: &mut LayerState,
    ) -> Result<(), TreeError> {
        let parent = path.parent().unwrap_or(Path::new(""));
        let dir = self
            .resolve(parent, true)
            .map_err(|e| layer_err(path, e.to_string()))?;
        if name == OPAQUE_MARKER {
            state.opaque.push(dir);
            return Ok(());
        }
        if name.starts_with(AUFS_META_PREFIX) {
            return Ok(());
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(layer_err(path, "whiteout names no file"));
        }
        let mut target = dir;
        target.push(OsStr::from_bytes(hidden).to_os_string());
        if !state.added.contains(&target)
            && let Some((last, parents)) = target.split_last()
            && let Some(d) = self.dir_mut(parents)
        {
            d.entries.remove(last);
        }
        Ok(())
    }
}

/// Removes from `dir` everything this layer did not add, keeping directories
/// that lead to something it added. Returns whether anything is left.
fn prune_lower(dir: &mut Dir, path: &mut Vec<OsString>, added: &HashSet<Vec<OsString>>) -> bool {
    dir.entries.retain(|name, node| {
        path.push(name.clone());
        let is_added = added.contains(path.as_slice());
        let keep = match node {
            Node::Dir(d) => prune_lower(d, path, added) || is_added,
            Node::Leaf(_) => is_added,
        };
        path.pop();
        keep
    });
    !dir.entries.is_empty()
}

/// Mode, owner, mtime and xattrs of a tar entry, PAX records applied.
fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) -> Result<Meta, TreeError> {
    let h = entry.header();
    let bad = |what: &str, e: std::io::Error| layer_err(path, format!("bad {what}: {e}"));
    let mut meta = Meta {
        mode: h.mode().map_err(|e| bad("mode", e))? & 0o7777,
        uid: u32::try_from(h.uid().map_err(|e| bad("uid", e))?)
            .map_err(|_| layer_err(path, "uid above 2^32"))?,
        gid: u32::try_from(h.gid().map_err(|e| bad("gid", e))?)
            .map_err(|_| layer_err(path, "gid above 2^32"))?,
        mtime: i64::try_from(h.mtime().map_err(|e| bad("mtime", e))?).unwrap_or(i64::MAX),
        xattrs: Default::default(),
    };
    let Some(pax) = entry.pax_extensions().map_err(|e| bad("pax header", e))? else {
        return Ok(meta);
    };
    for ext in pax {
        let ext = ext.map_err(|e| bad("pax record", e))?;
        let Ok(key) = ext.key() else { continue };
        if let Some(name) = key.strip_prefix(XATTR_PREFIX) {
            meta.xattrs
                .insert(name.to_string(), ext.value_bytes().to_vec());
        } else if key == "mtime" {
            let value = ext
                .value()
                .map_err(|_| layer_err(path, "pax mtime is not UTF-8"))?;
            let secs = value.split('.').next().unwrap_or("");
            meta.mtime = secs
                .parse()
                .map_err(|_| layer_err(path, format!("bad pax mtime {value:?}")))?;
        }
    }
    Ok(meta)
}
