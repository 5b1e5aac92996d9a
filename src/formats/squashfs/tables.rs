//! The inode, directory, id and xattr tables, built in one depth-first pass
//! over the tree once the data area is written.
//!
//! Order: a directory's children are written first (a child directory's
//! whole subtree, a leaf's inode), then the directory's listing, then its
//! inode; the root's inode is last. Inode numbers follow that order (1 for
//! the first inode written, the root gets the highest number), as mksquashfs
//! numbers them, so the children of one directory have close numbers and
//! their listing needs few headers. Hardlinked leaves are written once, at
//! their first name in walk order; later names point at the same inode.
//!
//! Listings (format.txt 6): a new header starts after 256 entries, when the
//! inodes move to another metadata block, when an inode number is more than
//! ±32767 from the header's (which numbering in table order never causes:
//! one block holds a few hundred inodes), and when a run would pass 8 KiB
//! (as mksquashfs does, so each index entry narrows a lookup to about one
//! block). A listing
//! longer than one metadata block gets an index entry for every header after
//! the first, which makes its inode an extended directory.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SquashfsError;
use super::compressor::BlockCompressor;
use super::data::FileData;
use super::layout::{
    DIR_HEADER_MAX_ENTRIES, DIR_SIZE_BIAS, DirEntry, DirHeader, DirIndex, INVALID_INDEX, InodeBody,
    InodeHeader, InodeType, MAX_NAME, METADATA_SIZE, MetaRef, XATTR_PREFIXES, XattrId, XattrPair,
    encode_dev,
};
use super::metadata::MetaWriter;
use crate::formats::WriteError;
use crate::tree::{Content, Dir, FsTree, Inode, LeafKind, Meta, Node};

/// Longest symlink target, in bytes: Linux's `PATH_MAX` less the NUL. The
/// kernel reads a target into one page.
const MAX_SYMLINK: usize = 4095;
/// The id table's count is a u16 (format.txt 3).
const MAX_IDS: usize = u16::MAX as usize;

/// What the pre-pass over the tree learnt.
pub struct Plan<'a> {
    /// Names per leaf inode.
    pub links: HashMap<*const Inode, u32>,
    /// Regular-file inodes in walk order of their first name, with that name.
    pub files: Vec<(PathBuf, &'a Content)>,
    /// Index into `files` per regular-file inode.
    pub file_index: HashMap<*const Inode, usize>,
}

impl<'a> Plan<'a> {
    pub fn new(tree: &'a FsTree) -> Plan<'a> {
        let mut plan = Plan {
            links: HashMap::new(),
            files: Vec::new(),
            file_index: HashMap::new(),
        };
        for (path, node) in tree.walk() {
            let Some(Node::Leaf(i)) = node.node() else {
                continue;
            };
            let ptr = Arc::as_ptr(i);
            let n = plan.links.entry(ptr).or_default();
            *n += 1;
            if let (1, LeafKind::File(c)) = (*n, &i.kind) {
                plan.file_index.insert(ptr, plan.files.len());
                plan.files.push((path, c));
            }
        }
        plan
    }
}

/// The finished tables, as on disk (metadata blocks, before their offsets
/// in the image are known: all references inside are table-relative).
pub struct Tables {
    pub inode_table: Vec<u8>,
    pub directory_table: Vec<u8>,
    pub root: MetaRef,
    pub inodes: u32,
    pub ids: Vec<u32>,
    /// Key/value metadata blocks and the id records; `None` without xattrs.
    pub xattrs: Option<(Vec<u8>, Vec<XattrId>)>,
}

/// Builds every table of `tree`, whose file data is described by `files`.
pub fn build(
    tree: &FsTree,
    plan: &Plan<'_>,
    files: &[FileData],
    comp: &mut BlockCompressor,
) -> Result<Tables, SquashfsError> {
    let mut numbers = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut count = 0u64;
    number_dirs(tree.root(), &mut count, &mut seen, &mut numbers);
    let inodes = u32::try_from(count).map_err(|_| SquashfsError::Limit {
        what: "inodes",
        limit: u64::from(u32::MAX),
    })?;
    let mut b = Builder {
        comp,
        plan,
        files,
        numbers,
        inode_table: MetaWriter::new(),
        dir_table: MetaWriter::new(),
        ids: Ids::default(),
        xattrs: Xattrs::default(),
        written: HashMap::new(),
        next_ino: 0,
        scratch: Vec::new(),
    };
    // mksquashfs gives the root's parent as inodes + 1; nothing reads it.
    let root = b.dir(tree.root(), Path::new("/"), inodes, inodes.wrapping_add(1))?;
    let io = SquashfsError::Compress;
    let xattrs = if b.xattrs.ids.is_empty() {
        None
    } else {
        let (kv, _) = b.xattrs.kv.finish(b.comp).map_err(io)?;
        Some((kv, b.xattrs.ids))
    };
    Ok(Tables {
        inode_table: b.inode_table.finish(b.comp).map_err(io)?.0,
        directory_table: b.dir_table.finish(b.comp).map_err(io)?.0,
        root,
        inodes,
        ids: b.ids.list,
        xattrs,
    })
}

/// Numbers directories in write order (see the module doc): each gets the
/// number after all new inodes of its subtree.
fn number_dirs(
    dir: &Dir,
    count: &mut u64,
    seen: &mut std::collections::HashSet<*const Inode>,
    out: &mut HashMap<*const Dir, u32>,
) {
    for child in dir.entries.values() {
        match child {
            Node::Dir(d) => number_dirs(d, count, seen, out),
            Node::Leaf(i) => {
                if seen.insert(Arc::as_ptr(i)) {
                    *count += 1;
                }
            }
        }
    }
    *count += 1;
    // Saturates past u32: `build` refuses that count before anything uses it.
    out.insert(dir, u32::try_from(*count).unwrap_or(u32::MAX));
}

/// A listing entry before serialisation.
struct Entry<'a> {
    name: &'a [u8],
    inode: MetaRef,
    ino: u32,
    kind: InodeType,
}

struct Builder<'a, 'p> {
    comp: &'a mut BlockCompressor,
    plan: &'a Plan<'p>,
    files: &'a [FileData],
    numbers: HashMap<*const Dir, u32>,
    inode_table: MetaWriter,
    dir_table: MetaWriter,
    ids: Ids,
    xattrs: Xattrs,
    /// Leaf inodes already written: where, their number and type.
    written: HashMap<*const Inode, (MetaRef, u32, InodeType)>,
    /// The last inode number handed out.
    next_ino: u32,
    scratch: Vec<u8>,
}

fn unrep(path: &Path, what: impl Into<String>) -> SquashfsError {
    SquashfsError::Write(WriteError::Unrepresentable {
        path: path.into(),
        what: what.into(),
        format: "squashfs",
    })
}

fn limit(what: &'static str, limit: u64) -> SquashfsError {
    SquashfsError::Limit { what, limit }
}

impl Builder<'_, '_> {
    /// Writes the subtree of `dir` and its inode; returns where the inode is.
    fn dir(
        &mut self,
        dir: &Dir,
        path: &Path,
        ino: u32,
        parent: u32,
    ) -> Result<MetaRef, SquashfsError> {
        let mut entries = Vec::with_capacity(dir.entries.len());
        let mut subdirs = 0u32;
        for (name, child) in &dir.entries {
            let name_b = name.as_encoded_bytes();
            if name_b.is_empty() || name_b.len() > MAX_NAME {
                return Err(unrep(&path.join(name), "a name longer than 256 bytes"));
            }
            let e = match child {
                Node::Dir(d) => {
                    subdirs += 1;
                    let child_ino = self.numbers.get(&(d as *const Dir)).copied().unwrap_or(0);
                    let inode = self.dir(d, &path.join(name), child_ino, ino)?;
                    Entry {
                        name: name_b,
                        inode,
                        ino: child_ino,
                        kind: InodeType::Dir,
                    }
                }
                Node::Leaf(i) => self.leaf(i, path, name)?,
            };
            entries.push(e);
        }
        let listing = self.listing(&entries, path)?;
        self.next_ino += 1;
        debug_assert_eq!(self.next_ino, ino, "directory numbering");
        self.dir_inode(&dir.meta, path, ino, parent, 2 + subdirs, listing)
    }

    fn dir_inode(
        &mut self,
        meta: &Meta,
        path: &Path,
        ino: u32,
        parent: u32,
        nlink: u32,
        l: Listing,
    ) -> Result<MetaRef, SquashfsError> {
        let xattr = self.xattrs.add(&meta.xattrs, path, self.comp)?;
        let size = l.len + DIR_SIZE_BIAS;
        let start = u32::try_from(l.start.block)
            .map_err(|_| limit("directory table bytes", u32::MAX.into()))?;
        let basic = xattr.is_none() && l.index.is_empty() && size <= u32::from(u16::MAX);
        let body = if basic {
            InodeBody::BasicDir {
                start,
                nlink,
                size: size as u16,
                offset: l.start.offset,
                parent,
            }
        } else {
            if l.index.len() > usize::from(u16::MAX) {
                return Err(unrep(
                    path,
                    "a directory with more than 65535 index entries",
                ));
            }
            InodeBody::ExtDir {
                nlink,
                size,
                start,
                parent,
                offset: l.start.offset,
                xattr: xattr.unwrap_or(INVALID_INDEX),
                index: &l.index,
            }
        };
        let kind = if basic {
            InodeType::Dir.basic()
        } else {
            InodeType::Dir.extended()
        };
        self.inode(meta, path, kind, ino, &body)
    }

    /// Serialises one inode into the inode table.
    fn inode(
        &mut self,
        meta: &Meta,
        path: &Path,
        inode_type: u16,
        ino: u32,
        body: &InodeBody<'_>,
    ) -> Result<MetaRef, SquashfsError> {
        let mtime =
            u32::try_from(meta.mtime).map_err(|_| unrep(path, format!("mtime {}", meta.mtime)))?;
        let header = InodeHeader {
            inode_type,
            mode: (meta.mode & 0o7777) as u16,
            uid_idx: self.ids.index(meta.uid)?,
            gid_idx: self.ids.index(meta.gid)?,
            mtime,
            inode_number: ino,
        };
        let at = self.inode_table.position();
        self.scratch.clear();
        super::layout::write_inode(&header, body, &mut self.scratch);
        self.inode_table
            .write(&self.scratch, self.comp)
            .map_err(SquashfsError::Compress)?;
        Ok(at)
    }

    /// Writes a leaf's inode unless a hardlink already did.
    fn leaf<'n>(
        &mut self,
        i: &Arc<Inode>,
        dir: &Path,
        name: &'n OsStr,
    ) -> Result<Entry<'n>, SquashfsError> {
        let name_b = name.as_encoded_bytes();
        let ptr = Arc::as_ptr(i);
        if let Some(&(inode, ino, kind)) = self.written.get(&ptr) {
            return Ok(Entry {
                name: name_b,
                inode,
                ino,
                kind,
            });
        }
        let path = dir.join(name);
        self.next_ino += 1;
        let ino = self.next_ino;
        let nlink = self.plan.links.get(&ptr).copied().unwrap_or(1);
        let xattr = self.xattrs.add(&i.meta.xattrs, &path, self.comp)?;
        let (kind, at) = match &i.kind {
            LeafKind::File(_) => {
                let data = self.plan.file_index.get(&ptr);
                let data = data.and_then(|&k| self.files.get(k));
                let data = data.ok_or(SquashfsError::Internal("file without data"))?;
                let at = self.file_inode(&i.meta, &path, ino, nlink, xattr, data)?;
                (InodeType::File, at)
            }
            _ => self.special_inode(i, &path, ino, nlink, xattr)?,
        };
        self.written.insert(ptr, (at, ino, kind));
        Ok(Entry {
            name: name_b,
            inode: at,
            ino,
            kind,
        })
    }

    /// A symlink, device, fifo or socket inode; extended iff it has xattrs.
    fn special_inode(
        &mut self,
        i: &Inode,
        path: &Path,
        ino: u32,
        nlink: u32,
        xattr: Option<u32>,
    ) -> Result<(InodeType, MetaRef), SquashfsError> {
        let (t, body) = match &i.kind {
            LeafKind::Symlink(target) => {
                let target = target.as_os_str().as_encoded_bytes();
                if target.is_empty() || target.len() > MAX_SYMLINK {
                    let what = "a symlink target of 0 or more than 4095 bytes";
                    return Err(unrep(path, what));
                }
                let body = InodeBody::Symlink {
                    nlink,
                    target,
                    xattr,
                };
                (InodeType::Symlink, body)
            }
            LeafKind::CharDev { major, minor } | LeafKind::BlockDev { major, minor } => {
                let rdev = encode_dev(*major, *minor)
                    .ok_or_else(|| unrep(path, format!("device number {major}:{minor}")))?;
                let t = match i.kind {
                    LeafKind::CharDev { .. } => InodeType::CharDev,
                    _ => InodeType::BlockDev,
                };
                (t, InodeBody::Device { nlink, rdev, xattr })
            }
            LeafKind::Fifo => (InodeType::Fifo, InodeBody::Ipc { nlink, xattr }),
            LeafKind::Socket => (InodeType::Socket, InodeBody::Ipc { nlink, xattr }),
            LeafKind::File(_) => return Err(SquashfsError::Internal("file as special inode")),
        };
        let inode_type = if xattr.is_some() {
            t.extended()
        } else {
            t.basic()
        };
        Ok((t, self.inode(&i.meta, path, inode_type, ino, &body)?))
    }

    /// A basic file inode when it can be one (as mksquashfs decides: under
    /// 4 GiB, data below 4 GiB, one name, nothing sparse, no xattrs).
    fn file_inode(
        &mut self,
        meta: &Meta,
        path: &Path,
        ino: u32,
        nlink: u32,
        xattr: Option<u32>,
        d: &FileData,
    ) -> Result<MetaRef, SquashfsError> {
        let small = u32::try_from(d.size).ok().zip(u32::try_from(d.start).ok());
        match small {
            Some((size, start)) if nlink == 1 && d.sparse == 0 && xattr.is_none() => {
                let body = InodeBody::BasicFile {
                    start,
                    frag: d.frag,
                    size,
                    blocks: &d.blocks,
                };
                self.inode(meta, path, InodeType::File.basic(), ino, &body)
            }
            _ => {
                let body = InodeBody::ExtFile {
                    start: d.start,
                    size: d.size,
                    sparse: d.sparse,
                    nlink,
                    frag: d.frag,
                    xattr: xattr.unwrap_or(INVALID_INDEX),
                    blocks: &d.blocks,
                };
                self.inode(meta, path, InodeType::File.extended(), ino, &body)
            }
        }
    }

    /// Writes a directory's listing (see the module doc for the header and
    /// index rules).
    fn listing(&mut self, entries: &[Entry<'_>], path: &Path) -> Result<Listing, SquashfsError> {
        let start = self.dir_table.position();
        let mut buf = Vec::new();
        // (offset in the listing, first name) of each header.
        let mut heads: Vec<(usize, &[u8])> = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            let base = &entries[i];
            let end = run_end(entries, i);
            heads.push((buf.len(), base.name));
            let inode_block = u32::try_from(base.inode.block)
                .map_err(|_| limit("inode table bytes", u32::MAX.into()))?;
            DirHeader {
                count: (end - i) as u32,
                start: inode_block,
                inode_number: base.ino,
            }
            .write(&mut buf);
            for e in &entries[i..end] {
                DirEntry {
                    offset: e.inode.offset,
                    // In range: `run_end` checked it.
                    inode_delta: (i64::from(e.ino) - i64::from(base.ino)) as i16,
                    inode_type: e.kind.basic(),
                    name: e.name,
                }
                .write(&mut buf);
            }
            i = end;
        }
        let len = u32::try_from(buf.len() as u64 + u64::from(DIR_SIZE_BIAS))
            .map_err(|_| unrep(path, "a directory listing of 4 GiB or more"))?
            - DIR_SIZE_BIAS;
        let mut index = Vec::new();
        let big = buf.len() > METADATA_SIZE;
        for (k, &(off, name)) in heads.iter().enumerate() {
            let next = heads.get(k + 1).map_or(buf.len(), |h| h.0);
            if big && k > 0 {
                let at = self.dir_table.position();
                index.push(DirIndex {
                    index: off as u32,
                    start: u32::try_from(at.block)
                        .map_err(|_| limit("directory table bytes", u32::MAX.into()))?,
                    name: name.to_vec(),
                });
            }
            self.dir_table
                .write(&buf[off..next], self.comp)
                .map_err(SquashfsError::Compress)?;
        }
        Ok(Listing { start, len, index })
    }
}

/// Where a listing went and its index.
struct Listing {
    start: MetaRef,
    /// Bytes, headers included, without the bias.
    len: u32,
    index: Vec<DirIndex>,
}

/// The end (exclusive) of the header run starting at entry `i`.
fn run_end(entries: &[Entry<'_>], i: usize) -> usize {
    let base = &entries[i];
    let mut bytes = DirHeader::LEN;
    let mut j = i;
    while j < entries.len() && j - i < DIR_HEADER_MAX_ENTRIES {
        let e = &entries[j];
        let delta = i64::from(e.ino) - i64::from(base.ino);
        let size = DirEntry::LEN + e.name.len();
        if e.inode.block != base.inode.block
            || i16::try_from(delta).is_err()
            || (j > i && bytes + size > METADATA_SIZE)
        {
            break;
        }
        bytes += size;
        j += 1;
    }
    j
}

/// The id table: uids and gids in order of first use (format.txt 9).
#[derive(Default)]
struct Ids {
    list: Vec<u32>,
    index: HashMap<u32, u16>,
}

impl Ids {
    fn index(&mut self, id: u32) -> Result<u16, SquashfsError> {
        if let Some(&i) = self.index.get(&id) {
            return Ok(i);
        }
        if self.list.len() >= MAX_IDS {
            return Err(limit("distinct uids and gids", MAX_IDS as u64));
        }
        let i = self.list.len() as u16;
        self.list.push(id);
        self.index.insert(id, i);
        Ok(i)
    }
}

/// The xattr key/value blocks and id records (format.txt 10). Identical
/// sets are stored once and share an id; values are always inline.
#[derive(Default)]
struct Xattrs {
    kv: MetaWriter,
    ids: Vec<XattrId>,
    /// Serialised set -> id.
    known: HashMap<Vec<u8>, u32>,
}

impl Xattrs {
    /// The id of this set, stored if new; `None` for no xattrs.
    fn add(
        &mut self,
        set: &BTreeMap<String, Vec<u8>>,
        path: &Path,
        comp: &mut BlockCompressor,
    ) -> Result<Option<u32>, SquashfsError> {
        if set.is_empty() {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        for (name, value) in set {
            let Some((prefix, rest)) = XATTR_PREFIXES
                .iter()
                .find_map(|(p, id)| name.strip_prefix(p).map(|rest| (*id, rest)))
            else {
                return Err(unrep(
                    path,
                    format!("xattr {name:?} (only user., trusted. and security. names)"),
                ));
            };
            if rest.len() > usize::from(u16::MAX) || u32::try_from(value.len()).is_err() {
                return Err(unrep(
                    path,
                    format!("xattr {name:?} of {} bytes", value.len()),
                ));
            }
            XattrPair {
                prefix,
                name: rest.as_bytes(),
                value,
            }
            .write(&mut bytes);
        }
        if let Some(&id) = self.known.get(&bytes) {
            return Ok(Some(id));
        }
        let id = u32::try_from(self.ids.len())
            .ok()
            .filter(|&id| id != INVALID_INDEX)
            .ok_or(limit("xattr sets", u64::from(u32::MAX - 1)))?;
        let size =
            u32::try_from(bytes.len()).map_err(|_| unrep(path, "xattrs of 4 GiB or more"))?;
        let at = self.kv.position();
        self.kv
            .write(&bytes, comp)
            .map_err(SquashfsError::Compress)?;
        self.ids.push(XattrId {
            xattr: at.packed(),
            count: set.len() as u32,
            size,
        });
        self.known.insert(bytes, id);
        Ok(Some(id))
    }
}
