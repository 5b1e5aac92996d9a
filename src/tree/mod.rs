//! `FsTree`: a filesystem held in memory as metadata, with file contents by
//! reference.
//!
//! Scope: the root tree smelt assembles from OCI layers ([`FsTree::apply_layer`],
//! in `layer.rs`), from host directories ([`FsTree::from_host_dir`], in
//! `host.rs`) and from generated files, and that the writers in
//! [`crate::formats`] serialise. Layers are never extracted onto the host: a
//! regular file's bytes stay where they are (a range of an uncompressed layer
//! tar in the store, a host file, or a small in-memory buffer) and are streamed
//! only when an output is written, so memory grows with the number of files,
//! not with their size.
//!
//! Model: a directory owns its children in a `BTreeMap` keyed by the raw name
//! bytes, so every listing is sorted by byte order. Every non-directory is an
//! `Arc<Inode>`; two names sharing one `Arc` are hardlinks.
//!
//! Paths: callers pass paths inside the tree, absolute or relative (a leading
//! `/` or `./` is ignored). A `..` component is an error. Symlinks met in the
//! *parent* components of a path are resolved inside the tree, as if chrooted
//! to its root (absolute targets start at the tree root), which is what
//! Docker's layer unpacking effectively does: with `/bin -> usr/bin`, inserting
//! `bin/foo` creates `usr/bin/foo`. A target that climbs above the root, and
//! more than [`MAX_SYMLINKS`] hops, are errors. The last component is never
//! followed (inserting over a symlink replaces the symlink).
//!
//! Non-goals: reading file contents into memory, hardlinked directories,
//! sparse files, ACLs beyond what xattrs carry.

mod host;
mod layer;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// How many symlinks one path resolution may follow, as Linux's `MAXSYMLINKS`.
pub const MAX_SYMLINKS: u32 = 40;

/// Errors from building or changing a tree. Each names the path (and for
/// layers, the tar entry) concerned; callers add the image name.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: PathBuf, reason: &'static str },
    #[error("path {path:?}: too many levels of symbolic links")]
    SymlinkLoop { path: PathBuf },
    #[error("path {path:?}: symbolic link points outside the tree")]
    SymlinkEscape { path: PathBuf },
    #[error("path {path:?}: a parent component is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("path {path:?}: not found in the tree")]
    NotFound { path: PathBuf },
    #[error("layer entry {entry:?}: {message}")]
    Layer { entry: PathBuf, message: String },
    #[error("reading layer: {0}")]
    LayerIo(#[source] io::Error),
    #[error("host path {path:?}: {source}")]
    Host {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("manifest:{line}: {message}")]
    Manifest { line: usize, message: String },
}

/// Metadata common to every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`0o7777`); never
    /// the file-type bits, which come from the node kind.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// Extended attributes by full name (`security.capability`, `user.x`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Meta {
    /// `mode` with owner 0:0, mtime 0 and no xattrs.
    pub fn root(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }
}

/// Where a regular file's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Small generated files.
    Bytes(Arc<[u8]>),
    /// `len` bytes at `offset` of an uncompressed layer tar in the store.
    Slice {
        file: Arc<PathBuf>,
        offset: u64,
        len: u64,
    },
    /// A whole host file (for `image pack`); `len` is its size when walked.
    Host { path: Arc<PathBuf>, len: u64 },
}

impl Content {
    /// The content's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Slice { len, .. } | Content::Host { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A stream of at most `len()` bytes. Writers must still check they got
    /// exactly `len()` bytes: a host file may have shrunk since it was walked.
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Content::Bytes(b) => Ok(Box::new(io::Cursor::new(Arc::clone(b)))),
            Content::Slice { file, offset, len } => {
                let mut f = File::open(file.as_path())?;
                f.seek(SeekFrom::Start(*offset))?;
                Ok(Box::new(f.take(*len)))
            }
            Content::Host { path, len } => Ok(Box::new(File::open(path.as_path())?.take(*len))),
        }
    }

    /// All the bytes, for the few small files a writer needs in memory
    /// (boot loaders, the kernel, module indexes); a source that is shorter
    /// or longer than `len()` is an error naming its origin.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len() as usize);
        self.open()?.read_to_end(&mut out)?;
        if out.len() as u64 != self.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: expected {} bytes, read {}",
                    self.origin(),
                    self.len(),
                    out.len()
                ),
            ));
        }
        Ok(out)
    }

    /// A description of where the bytes come from, for error messages.
    pub fn origin(&self) -> String {
        match self {
            Content::Bytes(_) => "in-memory content".to_string(),
            Content::Slice { file, offset, .. } => format!("{} at offset {offset}", file.display()),
            Content::Host { path, .. } => path.display().to_string(),
        }
    }
}

/// What a non-directory node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafKind {
    File(Content),
    Symlink(PathBuf),
    CharDev { major: u32, minor: u32 },
    BlockDev { major: u32, minor: u32 },
    Fifo,
    Socket,
}

/// A non-directory inode; hardlinks share one `Arc<Inode>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub meta: Meta,
    pub kind: LeafKind,
}

/// A directory and its children, sorted by name bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dir {
    pub meta: Meta,
    pub entries: BTreeMap<OsString, Node>,
}

impl Dir {
    pub fn new(meta: Meta) -> Dir {
        Dir {
            meta,
            entries: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir(Dir),
    Leaf(Arc<Inode>),
}

impl Node {
    /// A regular file node.
    pub fn file(meta: Meta, content: Content) -> Node {
        Node::leaf(meta, LeafKind::File(content))
    }

    pub fn leaf(meta: Meta, kind: LeafKind) -> Node {
        Node::Leaf(Arc::new(Inode { meta, kind }))
    }

    pub fn meta(&self) -> &Meta {
        match self {
            Node::Dir(d) => &d.meta,
            Node::Leaf(i) => &i.meta,
        }
    }
}

/// The in-memory filesystem. See the module doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsTree {
    root: Dir,
}

impl Default for FsTree {
    fn default() -> Self {
        FsTree::new()
    }
}

/// Splits a tree path into its names: leading `/` and `.` components are
/// dropped, `..` is refused so nothing can point outside the tree.
pub fn split_path(path: &Path) -> Result<Vec<OsString>, TreeError> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                return Err(TreeError::InvalidPath {
                    path: path.into(),
                    reason: "contains '..'",
                });
            }
            Component::Prefix(_) => {
                return Err(TreeError::InvalidPath {
                    path: path.into(),
                    reason: "has a prefix",
                });
            }
        }
    }
    Ok(out)
}

impl FsTree {
    /// An empty tree: a root directory 0755 owned by 0:0, mtime 0.
    pub fn new() -> FsTree {
        FsTree {
            root: Dir::new(Meta::root(0o755)),
        }
    }

    pub fn root(&self) -> &Dir {
        &self.root
    }

    pub fn root_mut(&mut self) -> &mut Dir {
        &mut self.root
    }

    /// Resolves symlinks in the parent components of `path` (and in the last
    /// one too when `follow_last`), returning the real names from the root.
    fn resolve(&self, path: &Path, follow_last: bool) -> Result<Vec<OsString>, TreeError> {
        let comps = split_path(path)?;
        let mut pending: Vec<(OsString, bool)> = Vec::new(); // stack, next at the end
        for (i, c) in comps.iter().enumerate().rev() {
            pending.push((c.clone(), i + 1 == comps.len() && !follow_last));
        }
        let mut out: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some((name, is_last)) = pending.pop() {
            if name == "." {
                continue;
            }
            if name == ".." {
                if out.pop().is_none() {
                    return Err(TreeError::SymlinkEscape { path: path.into() });
                }
                continue;
            }
            out.push(name);
            if is_last {
                continue;
            }
            let Some(Node::Leaf(inode)) = self.get(&out) else {
                continue;
            };
            let LeafKind::Symlink(target) = &inode.kind else {
                continue;
            };
            hops += 1;
            if hops > MAX_SYMLINKS {
                return Err(TreeError::SymlinkLoop { path: path.into() });
            }
            out.pop();
            if target.is_absolute() {
                out.clear();
            }
            for c in target.components().rev() {
                let n = match c {
                    Component::Normal(n) => n.to_os_string(),
                    Component::ParentDir => OsString::from(".."),
                    _ => continue,
                };
                pending.push((n, false));
            }
        }
        Ok(out)
    }

    /// The node at exactly these names, without resolving symlinks.
    fn get(&self, comps: &[OsString]) -> Option<&Node> {
        let mut dir = &self.root;
        let (last, parents) = comps.split_last()?;
        for c in parents {
            match dir.entries.get(c)? {
                Node::Dir(d) => dir = d,
                Node::Leaf(_) => return None,
            }
        }
        dir.entries.get(last)
    }

    /// The parent directory of these names, created (0755 0:0) if missing.
    fn parent_mut(&mut self, comps: &[OsString], orig: &Path) -> Result<&mut Dir, TreeError> {
        let mut dir = &mut self.root;
        for c in &comps[..comps.len().saturating_sub(1)] {
            let node = dir
                .entries
                .entry(c.clone())
                .or_insert_with(|| Node::Dir(Dir::new(Meta::root(0o755))));
            match node {
                Node::Dir(d) => dir = d,
                Node::Leaf(_) => return Err(TreeError::NotADirectory { path: orig.into() }),
            }
        }
        Ok(dir)
    }

    /// The node at `path` (the root for `/` or `""`); parent symlinks are
    /// resolved, the last component is not followed.
    pub fn lookup(&self, path: &Path) -> Option<&Node> {
        let comps = self.resolve(path, false).ok()?;
        if comps.is_empty() {
            // The root is not a `Node`; callers use `root()`.
            return None;
        }
        self.get(&comps)
    }

    /// Like `lookup`, but follows a symlink in the last component too.
    pub fn lookup_follow(&self, path: &Path) -> Option<&Node> {
        let comps = self.resolve(path, true).ok()?;
        self.get(&comps)
    }

    /// Inserts `node` at `path`, creating missing parents as 0755 0:0
    /// directories. A directory over an existing directory updates its
    /// metadata and keeps (merges) the children; anything else replaces what
    /// was there. `path` = root accepts only a directory (metadata update).
    pub fn insert(&mut self, path: &Path, node: Node) -> Result<(), TreeError> {
        let comps = self.resolve(path, false)?;
        self.insert_at(&comps, node, path)
    }

    /// `insert` at already-resolved names; returns them for bookkeeping.
    fn insert_at(&mut self, comps: &[OsString], node: Node, orig: &Path) -> Result<(), TreeError> {
        let Some(name) = comps.last() else {
            return match node {
                Node::Dir(d) => {
                    self.root.meta = d.meta;
                    self.root.entries.extend(d.entries);
                    Ok(())
                }
                Node::Leaf(_) => Err(TreeError::InvalidPath {
                    path: orig.into(),
                    reason: "the root must be a directory",
                }),
            };
        };
        let parent = self.parent_mut(comps, orig)?;
        match (parent.entries.get_mut(name), node) {
            (Some(Node::Dir(old)), Node::Dir(new)) => {
                old.meta = new.meta;
                old.entries.extend(new.entries);
            }
            (_, node) => {
                parent.entries.insert(name.clone(), node);
            }
        }
        Ok(())
    }

    /// Removes and returns the node at `path` (parent symlinks resolved).
    pub fn remove(&mut self, path: &Path) -> Option<Node> {
        let comps = self.resolve(path, false).ok()?;
        let (name, parents) = comps.split_last()?;
        let mut dir = &mut self.root;
        for c in parents {
            match dir.entries.get_mut(c)? {
                Node::Dir(d) => dir = d,
                Node::Leaf(_) => return None,
            }
        }
        dir.entries.remove(name)
    }

    /// Creates `path` and its missing ancestors as directories with `meta`
    /// (like `mkdir -p`, following symlinks); existing directories keep theirs.
    pub fn mkdir_p(&mut self, path: &Path, meta: Meta) -> Result<(), TreeError> {
        let comps = self.resolve(path, true)?;
        let mut dir = &mut self.root;
        for c in &comps {
            let node = dir
                .entries
                .entry(c.clone())
                .or_insert_with(|| Node::Dir(Dir::new(meta.clone())));
            match node {
                Node::Dir(d) => dir = d,
                Node::Leaf(_) => return Err(TreeError::NotADirectory { path: path.into() }),
            }
        }
        Ok(())
    }

    /// Puts the whole of `tree` at `path`, replacing whatever was there (its
    /// root directory becomes the directory at `path`). Missing parents are
    /// created 0755 0:0.
    pub fn graft(&mut self, path: &Path, tree: FsTree) -> Result<(), TreeError> {
        let comps = self.resolve(path, false)?;
        let Some(name) = comps.last() else {
            *self = tree;
            return Ok(());
        };
        let parent = self.parent_mut(&comps, path)?;
        parent.entries.insert(name.clone(), Node::Dir(tree.root));
        Ok(())
    }

    /// Every node in depth-first pre-order, children sorted by name bytes.
    /// The first item is the root with the empty path `""`; other paths are
    /// relative to the root, without a leading `/` or `./`.
    pub fn walk(&self) -> Walk<'_> {
        Walk {
            root: Some(&self.root),
            stack: Vec::new(),
        }
    }

    /// Sets every node's mtime to `mtime`.
    pub fn set_mtime_all(&mut self, mtime: i64) {
        self.map_meta(&mut |m| m.mtime = mtime);
    }

    /// Lowers every mtime later than `max` to `max` (`SOURCE_DATE_EPOCH`
    /// clamping, as reproducible-builds.org recommends).
    pub fn clamp_mtime(&mut self, max: i64) {
        self.map_meta(&mut |m| m.mtime = m.mtime.min(max));
    }

    /// Applies `f` to every node's metadata, keeping hardlinked names sharing
    /// one (new) inode.
    fn map_meta(&mut self, f: &mut dyn FnMut(&mut Meta)) {
        let mut done: HashMap<*const Inode, (Arc<Inode>, Arc<Inode>)> = HashMap::new();
        map_dir(&mut self.root, f, &mut done);
    }

    /// Changes the metadata of the node at `path` (every hardlink to it too).
    pub fn modify_meta(
        &mut self,
        path: &Path,
        f: &mut dyn FnMut(&mut Meta),
    ) -> Result<(), TreeError> {
        let comps = self.resolve(path, false)?;
        let old = match self.get(&comps) {
            None if comps.is_empty() => {
                f(&mut self.root.meta);
                return Ok(());
            }
            None => return Err(TreeError::NotFound { path: path.into() }),
            Some(Node::Dir(_)) => None,
            Some(Node::Leaf(i)) => Some(Arc::clone(i)),
        };
        let Some(old) = old else {
            if let Some(Node::Dir(d)) = self.get_mut(&comps) {
                f(&mut d.meta);
            }
            return Ok(());
        };
        let mut inode = Inode::clone(&old);
        f(&mut inode.meta);
        let new = Arc::new(inode);
        replace_inode(&mut self.root, &old, &new);
        Ok(())
    }

    fn get_mut(&mut self, comps: &[OsString]) -> Option<&mut Node> {
        let (last, parents) = comps.split_last()?;
        let mut dir = &mut self.root;
        for c in parents {
            match dir.entries.get_mut(c)? {
                Node::Dir(d) => dir = d,
                Node::Leaf(_) => return None,
            }
        }
        dir.entries.get_mut(last)
    }

    /// A regular file's content at `path`, following symlinks; `None` for
    /// anything else or nothing.
    pub fn file_content(&self, path: &Path) -> Option<Content> {
        match self.lookup_follow(path)? {
            Node::Leaf(inode) => match &inode.kind {
                LeafKind::File(c) => Some(c.clone()),
                _ => None,
            },
            Node::Dir(_) => None,
        }
    }

    /// The number of names in the tree, not counting the root (a file with
    /// two hardlinks counts twice).
    pub fn file_count(&self) -> usize {
        self.walk().count() - 1
    }

    /// The total size of regular-file contents, each hardlinked inode once.
    pub fn total_size(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        for (_, node) in self.walk() {
            if let WalkNode::Node(Node::Leaf(i)) = node
                && let LeafKind::File(c) = &i.kind
                && seen.insert(Arc::as_ptr(i))
            {
                total = total.saturating_add(c.len());
            }
        }
        total
    }
}

fn map_dir(
    dir: &mut Dir,
    f: &mut dyn FnMut(&mut Meta),
    done: &mut HashMap<*const Inode, (Arc<Inode>, Arc<Inode>)>,
) {
    f(&mut dir.meta);
    for node in dir.entries.values_mut() {
        match node {
            Node::Dir(d) => map_dir(d, f, done),
            Node::Leaf(old) => {
                let (_, new) = done.entry(Arc::as_ptr(old)).or_insert_with(|| {
                    let mut inode = Inode::clone(old);
                    f(&mut inode.meta);
                    (Arc::clone(old), Arc::new(inode))
                });
                *old = Arc::clone(new);
            }
        }
    }
}

fn replace_inode(dir: &mut Dir, old: &Arc<Inode>, new: &Arc<Inode>) {
    for node in dir.entries.values_mut() {
        match node {
            Node::Dir(d) => replace_inode(d, old, new),
            Node::Leaf(i) if Arc::ptr_eq(i, old) => *i = Arc::clone(new),
            Node::Leaf(_) => {}
        }
    }
}

/// The iterator returned by [`FsTree::walk`].
pub struct Walk<'a> {
    root: Option<&'a Dir>,
    stack: Vec<(
        PathBuf,
        std::collections::btree_map::Iter<'a, OsString, Node>,
    )>,
}

/// A walk item: the root is `WalkNode::Root`, everything else a `Node`.
#[derive(Clone, Copy, Debug)]
pub enum WalkNode<'a> {
    Root(&'a Dir),
    Node(&'a Node),
}

impl<'a> WalkNode<'a> {
    pub fn meta(&self) -> &'a Meta {
        match self {
            WalkNode::Root(d) => &d.meta,
            WalkNode::Node(n) => n.meta(),
        }
    }

    /// The node, unless this is the root (which is a bare [`Dir`]).
    pub fn node(&self) -> Option<&'a Node> {
        match self {
            WalkNode::Root(_) => None,
            WalkNode::Node(n) => Some(n),
        }
    }

    /// The directory, if this is one (the root always is).
    pub fn as_dir(&self) -> Option<&'a Dir> {
        match self {
            WalkNode::Root(d) => Some(d),
            WalkNode::Node(Node::Dir(d)) => Some(d),
            WalkNode::Node(Node::Leaf(_)) => None,
        }
    }
}

impl<'a> Iterator for Walk<'a> {
    type Item = (PathBuf, WalkNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(root) = self.root.take() {
            self.stack.push((PathBuf::new(), root.entries.iter()));
            return Some((PathBuf::new(), WalkNode::Root(root)));
        }
        loop {
            let (prefix, iter) = self.stack.last_mut()?;
            match iter.next() {
                Some((name, node)) => {
                    let path = prefix.join(name);
                    if let Node::Dir(d) = node {
                        self.stack.push((path.clone(), d.entries.iter()));
                    }
                    return Some((path, WalkNode::Node(node)));
                }
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
