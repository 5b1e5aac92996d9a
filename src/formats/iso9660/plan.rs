//! The whole layout, computed before any byte is written: directory records
//! with their Rock Ridge entries, path tables, continuation areas, file
//! extents and the position of every region.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::names::{Mangler, sort_key};
use super::records::{
    self, DirRecord, FLAG_DIRECTORY, Lba, MAX_DIR_RECORD, SECTOR, SYSTEM_AREA_SECTORS,
};
use super::rrip::{self, CE_LEN, Split};
use super::{Extent, IsoError, IsoOptions, Region, hybrid};
use crate::formats::WriteError;
use crate::tree::{Content, Dir, FsTree, Inode, LeafKind, Meta, Node};

/// What a directory record points at.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Dir(usize),
    File(usize),
    /// Symlinks, devices, fifos, sockets: no data.
    Nothing,
}

/// One directory record and its System Use entries.
pub struct Rec {
    pub ident: Vec<u8>,
    pub target: Target,
    pub susp: Split,
    /// Where each continuation area of `susp` is: (sector, offset).
    pub areas: Vec<(Lba, u32)>,
}

pub struct DirPlan {
    pub path: PathBuf,
    /// Path table identifier (the root's is 0x00).
    pub ident: Vec<u8>,
    pub parent: usize,
    /// `.`, `..`, then the entries in ECMA-119 §9.3 order.
    pub records: Vec<Rec>,
    pub lba: Lba,
    pub sectors: u32,
}

/// One regular file's data (hardlinks share it).
pub struct FilePlan {
    pub content: Content,
    pub lba: Lba,
    pub paths: Vec<PathBuf>,
}

pub struct Plan {
    pub dirs: Vec<DirPlan>,
    pub files: Vec<FilePlan>,
    pub path_table_size: u32,
    pub l_path: Lba,
    pub m_path: Lba,
    pub catalog: Lba,
    /// The file index of a visible catalog (its data is the catalog).
    pub catalog_file: Option<usize>,
    pub bios_file: Option<usize>,
    pub efi_file: Option<usize>,
    pub ce_start: Lba,
    pub ce_sectors: u32,
    /// Sectors in the volume, padding included.
    pub total: u32,
    /// The end of the data (first sector of padding).
    pub data_end: Lba,
    pub regions: Vec<Region>,
}

fn too_large(what: u64) -> IsoError {
    IsoError::ImageTooLarge { sectors: what }
}

/// Sector bookkeeping while laying out.
struct Cursor(u64);

impl Cursor {
    fn take(&mut self, sectors: u64) -> Result<Lba, IsoError> {
        let lba = u32::try_from(self.0).map_err(|_| too_large(self.0))?;
        self.0 += sectors;
        Ok(Lba(lba))
    }
}

impl Plan {
    pub fn new(tree: &FsTree, opts: &IsoOptions) -> Result<Plan, IsoError> {
        let mut tree = tree.clone();
        let catalog_path = opts.bios.as_ref().map(|b| b.catalog.clone());
        if let Some(p) = &catalog_path {
            add_catalog(&mut tree, p, opts.mtime)?;
        }
        let (files, by_inode, nlinks) = collect_files(&tree)?;
        let mut dirs = build_dirs(&tree, &by_inode, &nlinks, opts.mtime)?;
        let file_of = |p: &Path, what: &'static str| boot_file(&tree, p, &by_inode, what);
        let catalog_file = catalog_path
            .as_deref()
            .map(|p| file_of(p, "boot catalog"))
            .transpose()?;
        let bios_file = opts
            .bios
            .as_ref()
            .map(|b| file_of(&b.image, "BIOS boot image"))
            .transpose()?;
        let efi_file = opts
            .efi
            .as_ref()
            .map(|e| file_of(&e.image, "EFI boot image"))
            .transpose()?;
        let mut plan = Plan {
            dirs: Vec::new(),
            files,
            path_table_size: 0,
            l_path: Lba(0),
            m_path: Lba(0),
            catalog: Lba(0),
            catalog_file,
            bios_file,
            efi_file,
            ce_start: Lba(0),
            ce_sectors: 0,
            total: 0,
            data_end: Lba(0),
            regions: Vec::new(),
        };
        for d in &mut dirs {
            d.sectors = dir_sectors(&d.records);
        }
        plan.dirs = dirs;
        plan.allocate(opts)?;
        Ok(plan)
    }

    /// Gives every region its sectors, in write order.
    fn allocate(&mut self, opts: &IsoOptions) -> Result<(), IsoError> {
        let boot = opts.bios.is_some() || opts.efi.is_some();
        let mut cur = Cursor(u64::from(SYSTEM_AREA_SECTORS));
        let vds = cur.take(2 + u64::from(boot))?;
        self.region(
            "system area",
            Lba(0),
            u64::from(SYSTEM_AREA_SECTORS * SECTOR),
        );
        self.region(
            "volume descriptors",
            vds,
            (2 + u64::from(boot)) * u64::from(SECTOR),
        );
        if boot && self.catalog_file.is_none() {
            self.catalog = cur.take(1)?;
            self.region("boot catalog", self.catalog, u64::from(SECTOR));
        }
        self.path_table_size = self.path_table_len()?;
        let pt = records::sectors(u64::from(self.path_table_size));
        self.l_path = cur.take(pt)?;
        self.m_path = cur.take(pt)?;
        self.region("path tables", self.l_path, 2 * pt * u64::from(SECTOR));
        let dir_start = Lba(cur.0 as u32);
        for d in &mut self.dirs {
            d.lba = cur.take(u64::from(d.sectors))?;
        }
        self.region(
            "directories",
            dir_start,
            (cur.0 - u64::from(dir_start.0)) * u64::from(SECTOR),
        );
        self.ce_start = Lba(cur.0 as u32);
        self.ce_sectors = self.place_areas()?;
        cur.take(u64::from(self.ce_sectors))?;
        if self.ce_sectors > 0 {
            self.region(
                "rock ridge continuation areas",
                self.ce_start,
                u64::from(self.ce_sectors * SECTOR),
            );
        }
        for f in &mut self.files {
            let len = f.content.len();
            if len > 0 {
                f.lba = cur.take(records::sectors(len))?;
            }
        }
        if let Some(i) = self.catalog_file {
            self.catalog = self.files[i].lba;
        }
        self.data_end = cur.take(0)?;
        self.total = self.data_end.0;
        if opts.hybrid.as_ref().is_some_and(|h| h.gpt) && opts.efi.is_none() {
            return Err(IsoError::GptWithoutEfi);
        }
        if let Some(h) = &opts.hybrid {
            let gpt = if h.gpt { hybrid::GPT_SECTORS } else { 0 };
            let total512 = (self.data_end.sector512() + gpt).next_multiple_of(hybrid::CYLINDER);
            let total = u32::try_from(total512 / 4).map_err(|_| too_large(total512 / 4))?;
            self.total = total;
            let pad = u64::from(total - self.data_end.0) * u64::from(SECTOR);
            self.region("cylinder padding", self.data_end, pad);
        }
        Ok(())
    }

    fn region(&mut self, name: &'static str, lba: Lba, len: u64) {
        self.regions.push(Region {
            name,
            extent: Extent { lba, len },
        });
    }

    fn path_table_len(&self) -> Result<u32, IsoError> {
        let len: usize = self
            .dirs
            .iter()
            .map(|d| records::path_record_len(d.ident.len()))
            .sum();
        u32::try_from(len).map_err(|_| too_large(len as u64))
    }

    /// Places the continuation areas of every record, in directory order,
    /// packing them into sectors without crossing a sector boundary (SUSP
    /// §5.1). Returns the sectors used.
    fn place_areas(&mut self) -> Result<u32, IsoError> {
        let (mut sector, mut offset) = (0u32, 0u32);
        let start = self.ce_start;
        for d in &mut self.dirs {
            for r in &mut d.records {
                r.areas.clear();
                for (i, area) in r.susp.areas.iter().enumerate() {
                    let ce = if i + 1 < r.susp.areas.len() {
                        CE_LEN
                    } else {
                        0
                    };
                    let len = (area.iter().map(Vec::len).sum::<usize>() + ce) as u32;
                    if offset + len > SECTOR {
                        sector += 1;
                        offset = 0;
                    }
                    let lba = start
                        .0
                        .checked_add(sector)
                        .ok_or(too_large(u64::from(sector)))?;
                    r.areas.push((Lba(lba), offset));
                    offset += len;
                }
            }
        }
        Ok(if offset == 0 { sector } else { sector + 1 })
    }

    /// The extent a record describes: (sector, data length, flags).
    pub fn extent_of(&self, t: Target) -> (Lba, u32, u8) {
        match t {
            Target::Dir(i) => (
                self.dirs[i].lba,
                self.dirs[i].sectors * SECTOR,
                FLAG_DIRECTORY,
            ),
            // Sizes were checked to fit 32 bits in collect_files.
            Target::File(i) => (self.files[i].lba, self.files[i].content.len() as u32, 0),
            Target::Nothing => (Lba(0), 0, 0),
        }
    }

    /// Every file path with its extent.
    pub fn file_extents(&self) -> BTreeMap<PathBuf, Extent> {
        let mut m = BTreeMap::new();
        for f in &self.files {
            for p in &f.paths {
                let ext = Extent {
                    lba: f.lba,
                    len: f.content.len(),
                };
                m.insert(p.clone(), ext);
            }
        }
        m
    }
}

/// Sectors a directory's records take: records never cross a sector
/// boundary (ECMA-119 §6.8.1.1).
fn dir_sectors(records: &[Rec]) -> u32 {
    let (mut sectors, mut offset) = (1u32, 0usize);
    for r in records {
        let len = record_len(r);
        if offset + len > SECTOR as usize {
            sectors += 1;
            offset = 0;
        }
        offset += len;
    }
    sectors
}

pub fn record_len(r: &Rec) -> usize {
    let ce = if r.susp.areas.is_empty() { 0 } else { CE_LEN };
    let su: usize = r.susp.inline.iter().map(Vec::len).sum::<usize>() + ce;
    DirRecord::len(r.ident.len(), su)
}

/// A 2048-byte placeholder for the catalog, so it gets a directory record
/// and an extent like any file; its bytes are replaced when written.
fn add_catalog(tree: &mut FsTree, path: &Path, mtime: i64) -> Result<(), IsoError> {
    if tree.lookup(path).is_some() {
        return Err(IsoError::Boot {
            path: path.into(),
            reason: "the boot catalog path already exists in the tree".into(),
        });
    }
    let meta = Meta {
        mtime,
        ..Meta::root(0o444)
    };
    let placeholder = Content::Bytes(Arc::from(vec![0u8; SECTOR as usize]));
    tree.insert(path, Node::file(meta, placeholder))
        .map_err(|e| IsoError::Boot {
            path: path.into(),
            reason: e.to_string(),
        })
}

type ByInode = HashMap<*const Inode, usize>;
/// Names per inode, for `PX` link counts.
type Links = HashMap<*const Inode, u32>;

/// Regular files with data in walk order, each inode once; the file index
/// of every file inode; the name count of every inode (for `PX` links).
fn collect_files(tree: &FsTree) -> Result<(Vec<FilePlan>, ByInode, Links), IsoError> {
    let mut files: Vec<FilePlan> = Vec::new();
    let mut by_inode = HashMap::new();
    let mut nlinks: Links = HashMap::new();
    for (path, node) in tree.walk() {
        let Some(Node::Leaf(inode)) = node.node() else {
            continue;
        };
        let ptr = Arc::as_ptr(inode);
        *nlinks.entry(ptr).or_default() += 1;
        let LeafKind::File(content) = &inode.kind else {
            continue;
        };
        if u32::try_from(content.len()).is_err() {
            return Err(IsoError::Write(WriteError::Unrepresentable {
                path,
                what: "a file of 4 GiB or more (multi-extent files are not written)".into(),
                format: "ISO 9660",
            }));
        }
        let i = *by_inode.entry(ptr).or_insert_with(|| {
            files.push(FilePlan {
                content: content.clone(),
                lba: Lba(0),
                paths: Vec::new(),
            });
            files.len() - 1
        });
        files[i].paths.push(path);
    }
    Ok((files, by_inode, nlinks))
}

fn boot_file(
    tree: &FsTree,
    path: &Path,
    by_inode: &ByInode,
    what: &str,
) -> Result<usize, IsoError> {
    let err = |reason: &str| IsoError::Boot {
        path: path.into(),
        reason: format!("{what}: {reason}"),
    };
    match tree.lookup_follow(path) {
        Some(Node::Leaf(inode)) if matches!(inode.kind, LeafKind::File(_)) => by_inode
            .get(&Arc::as_ptr(inode))
            .copied()
            .ok_or_else(|| err("not found")),
        Some(_) => Err(err("not a regular file")),
        None => Err(err("not found in the tree")),
    }
}

/// Directories in path table order (breadth first; within a level by
/// parent, then identifier: ECMA-119 §6.9.1), each with its records.
fn build_dirs(
    tree: &FsTree,
    by_inode: &ByInode,
    nlinks: &Links,
    mtime: i64,
) -> Result<Vec<DirPlan>, IsoError> {
    let stamp = records::record_date(mtime);
    let mut dirs: Vec<DirPlan> = Vec::new();
    let mut queue: VecDeque<(&Dir, PathBuf, Vec<u8>, usize)> = VecDeque::new();
    queue.push_back((tree.root(), PathBuf::new(), vec![0], 0));
    while let Some((dir, path, ident, parent)) = queue.pop_front() {
        let me = dirs.len();
        let parent_dir = if me == 0 {
            dir
        } else {
            dir_at(tree, &dirs[parent].path)
        };
        let mut records = vec![
            dot_record(dir, me, true, stamp),
            dot_record(parent_dir, parent, false, stamp),
        ];
        let mut mangler = Mangler::default();
        let mut children: Vec<Rec> = Vec::new();
        let mut subdirs: Vec<(&Dir, PathBuf, Vec<u8>)> = Vec::new();
        for (name, node) in &dir.entries {
            let raw = name.as_encoded_bytes();
            let ident = mangler.assign(raw, matches!(node, Node::Dir(_)));
            let (target, mut entries, link) = match node {
                Node::Dir(d) => {
                    subdirs.push((d, path.join(name), ident.clone()));
                    (Target::Dir(0), dir_entries(d, stamp), Vec::new())
                }
                Node::Leaf(i) => leaf(i, by_inode, nlinks, stamp),
            };
            // NM before SL: the name stays in the record when it can.
            entries.extend(rrip::nm(raw));
            entries.extend(link);
            children.push(rec(ident, target, entries));
        }
        children.sort_by(|a, b| sort_key(&a.ident).cmp(&sort_key(&b.ident)));
        subdirs.sort_by(|a, b| sort_key(&a.2).cmp(&sort_key(&b.2)));
        let first_child = dirs.len() + queue.len() + 1;
        for (k, (d, p, id)) in subdirs.into_iter().enumerate() {
            if let Some(r) = children.iter_mut().find(|r| r.ident == id) {
                r.target = Target::Dir(first_child + k);
            }
            queue.push_back((d, p, id, me));
        }
        records.extend(children);
        dirs.push(DirPlan {
            path,
            ident,
            parent,
            records,
            lba: Lba(0),
            sectors: 0,
        });
        if dirs.len() + queue.len() > usize::from(u16::MAX) {
            return Err(IsoError::TooManyDirectories);
        }
    }
    Ok(dirs)
}

fn dir_at<'a>(tree: &'a FsTree, path: &Path) -> &'a Dir {
    match tree.lookup(path) {
        Some(Node::Dir(d)) => d,
        _ => tree.root(),
    }
}

fn rec(ident: Vec<u8>, target: Target, entries: Vec<Vec<u8>>) -> Rec {
    let fixed = DirRecord::len(ident.len(), 0);
    let susp = rrip::split(entries, MAX_DIR_RECORD - fixed, SECTOR as usize);
    Rec {
        ident,
        target,
        susp,
        areas: Vec::new(),
    }
}

/// `RR`, `PX` and `TF` of a directory; its links are 2 + subdirectories.
fn dir_entries(d: &Dir, stamp: [u8; 7]) -> Vec<Vec<u8>> {
    let subdirs = d
        .entries
        .values()
        .filter(|n| matches!(n, Node::Dir(_)))
        .count() as u32;
    let m = &d.meta;
    vec![
        rrip::rr(false, false, true),
        rrip::px(rrip::S_IFDIR | (m.mode & 0o7777), 2 + subdirs, m.uid, m.gid),
        rrip::tf(stamp),
    ]
}

/// `.` (own metadata) or `..` (the parent's); the root's `.` starts with
/// `SP` and carries `ER` (SUSP §5.3: SP in the first record of the root).
fn dot_record(d: &Dir, idx: usize, dot: bool, stamp: [u8; 7]) -> Rec {
    let mut entries = dir_entries(d, stamp);
    entries[0] = rrip::rr(false, false, false);
    if dot && idx == 0 {
        entries.insert(0, rrip::sp());
        entries.push(rrip::er());
    }
    rec(vec![if dot { 0 } else { 1 }], Target::Dir(idx), entries)
}

fn leaf(
    inode: &Arc<Inode>,
    by_inode: &ByInode,
    nlinks: &Links,
    stamp: [u8; 7],
) -> (Target, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let ptr = Arc::as_ptr(inode);
    let m = &inode.meta;
    let links = nlinks.get(&ptr).copied().unwrap_or(1);
    let (kind, target) = match &inode.kind {
        LeafKind::File(_) => (
            rrip::S_IFREG,
            by_inode
                .get(&ptr)
                .map_or(Target::Nothing, |&i| Target::File(i)),
        ),
        LeafKind::Symlink(_) => (rrip::S_IFLNK, Target::Nothing),
        LeafKind::CharDev { .. } => (rrip::S_IFCHR, Target::Nothing),
        LeafKind::BlockDev { .. } => (rrip::S_IFBLK, Target::Nothing),
        LeafKind::Fifo => (rrip::S_IFIFO, Target::Nothing),
        LeafKind::Socket => (rrip::S_IFSOCK, Target::Nothing),
    };
    let is_pn = matches!(
        inode.kind,
        LeafKind::CharDev { .. } | LeafKind::BlockDev { .. }
    );
    let is_sl = matches!(inode.kind, LeafKind::Symlink(_));
    let mut e = vec![
        rrip::rr(is_pn, is_sl, true),
        rrip::px(kind | (m.mode & 0o7777), links, m.uid, m.gid),
    ];
    if let LeafKind::CharDev { major, minor } | LeafKind::BlockDev { major, minor } = inode.kind {
        e.push(rrip::pn(major, minor));
    }
    e.push(rrip::tf(stamp));
    let link = match &inode.kind {
        LeafKind::Symlink(t) => rrip::sl(t.as_os_str().as_encoded_bytes()),
        _ => Vec::new(),
    };
    (target, e, link)
}
