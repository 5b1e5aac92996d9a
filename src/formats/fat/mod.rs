//! FAT12/16/32 filesystem image writer, after Microsoft's fatgen103 ("FAT32
//! File System Specification" 1.03) and the UEFI specification's EFI System
//! Partition (§13.3: FAT32 for fixed media, FAT12/16 allowed on removable
//! media and in El Torito images).
//!
//! Scope: a fresh, read-mostly volume holding a tree of directories and
//! regular files: the ESP smelt puts on a disk, the `efi.img` inside an ISO.
//! Each name gets a short 8.3 entry and, unless it already is an uppercase
//! 8.3 name, VFAT long-name entries with its real spelling ([`dir`]). Files
//! and directories get consecutive clusters in [`FsTree::walk`] order, so the
//! whole image is written front to back with no seeking: boot sector (plus
//! FSInfo and the backup boot sector on FAT32), both FATs, the FAT12/16 root
//! directory, then the data clusters.
//!
//! Choices: 512-byte sectors, two FATs, media 0xF8, FAT type from the cluster
//! count (fatgen103 §3.5: < 4085 FAT12, < 65525 FAT16) with the type chosen
//! by volume size unless [`FatOptions::kind`] forces one, and the smallest
//! cluster that gives a legal count ([`geometry`]). Every timestamp is
//! [`FatOptions::mtime`] (creation, write and access), clamped into FAT's
//! 1980-2107 range ([`dir::DosTime::from_unix`]).
//!
//! Non-goals and limits: symlinks, devices, fifos and sockets (errors
//! naming the path, never silently dropped); owners and modes (FAT has none:
//! they are ignored); hardlinks (each name gets its own copy of the data);
//! files of 4 GiB or more (`DIR_FileSize` is 32 bits: error); non-UTF-8
//! names, names with `"*/:<>?\|` or control characters, names differing
//! only in case (FAT compares case-insensitively): errors; bootable FAT (the
//! boot code only passes control to the next boot device); exFAT; sectors
//! other than 512 bytes.

mod boot;
pub mod dir;
pub mod geometry;
pub mod read;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use self::boot::{BACKUP_BOOT_SECTOR, BootSector, FSINFO_SECTOR, FsInfo, MEDIA};
use self::dir::{ATTR_ARCHIVE, ATTR_DIRECTORY, ATTR_VOLUME_ID, DirEntry, DosTime, ShortNames};
use self::geometry::{DIR_ENTRY, Geometry, RESERVED_FAT32, SECTOR};
use super::{CountingWriter, IO_BUFFER, WriteError, copy_content};
use crate::tree::{Content, Dir, FsTree, LeafKind, Node};

const FORMAT: &str = "FAT";
/// The label stored when none is given (fatgen103 §3.2 `BS_VolLab`).
const NO_NAME: &[u8; 11] = b"NO NAME    ";
/// A chosen size is rounded up to this (64 KiB, 128 sectors), so images
/// differ in size only in steps that keep partitions aligned.
const SIZE_STEP: u32 = 128;

/// A FAT variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

/// Options for [`write_fat`].
#[derive(Clone, Debug)]
pub struct FatOptions {
    /// Volume label: up to 11 of A-Z, 0-9, space and ``$%'-_@~`!(){}^#&``;
    /// empty for none (`NO NAME`).
    pub label: String,
    /// `BS_VolID`, the volume serial number (derive it from a hash).
    pub volume_id: u32,
    /// Every timestamp, seconds since the Unix epoch (`SOURCE_DATE_EPOCH`).
    pub mtime: i64,
    /// Force a FAT type; `None` chooses by size as fatgen103 recommends.
    pub kind: Option<FatType>,
    /// Total bytes, a multiple of 512; `None` for the smallest multiple of
    /// 64 KiB that holds the tree with 1/32 of it (at least 64 KiB) free.
    pub size: Option<u64>,
    /// `BPB_HiddSec`: the LBA of the partition holding the volume.
    pub hidden_sectors: u32,
}

/// Where a file's bytes are in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FatExtent {
    /// Byte offset from the start of the volume.
    pub offset: u64,
    pub len: u64,
}

/// What [`write_fat`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatLayout {
    /// Bytes of the volume.
    pub size: u64,
    pub kind: FatType,
    /// Bytes per cluster.
    pub cluster_size: u32,
    /// Data clusters in the volume, and how many are unused.
    pub clusters: u32,
    pub free_clusters: u32,
    /// Every regular file with data, by path in the tree.
    pub files: BTreeMap<PathBuf, FatExtent>,
}

/// Errors from [`write_fat`] and [`layout`].
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("volume label {label:?}: {reason}")]
    Label { label: String, reason: &'static str },
    #[error("FAT image size {0} is not a multiple of 512 bytes")]
    BadSize(u64),
    #[error("no {kind} geometry for a volume of {size} bytes")]
    NoGeometry { kind: String, size: u64 },
    #[error(
        "the tree needs {need} clusters of {cluster_size} bytes, the {size}-byte volume has {have}"
    )]
    DoesNotFit {
        need: u64,
        have: u32,
        cluster_size: u32,
        size: u64,
    },
}

/// Writes `tree` as a FAT volume to `out`, front to back.
pub fn write_fat(
    tree: &FsTree,
    opts: &FatOptions,
    out: &mut impl Write,
) -> Result<FatLayout, FatError> {
    let plan = Plan::new(tree, opts)?;
    let mut out = BufWriter::with_capacity(IO_BUFFER, CountingWriter::new(out));
    plan.write(opts, &mut out)?;
    out.flush().map_err(meta_io)?;
    let counter = out.into_inner().map_err(|e| meta_io(e.into_error()))?;
    debug_assert_eq!(counter.count(), plan.layout.size);
    Ok(plan.layout)
}

/// The layout [`write_fat`] would produce, without reading any content.
pub fn layout(tree: &FsTree, opts: &FatOptions) -> Result<FatLayout, FatError> {
    Ok(Plan::new(tree, opts)?.layout)
}

fn meta_io(source: std::io::Error) -> WriteError {
    WriteError::Io {
        path: "(FAT metadata)".into(),
        source,
    }
}

fn unrep(path: &Path, what: impl Into<String>) -> FatError {
    FatError::Write(WriteError::Unrepresentable {
        path: path.into(),
        what: what.into(),
        format: FORMAT,
    })
}

/// A label as the 11 bytes of `BS_VolLab`.
fn label_bytes(label: &str) -> Result<Option<[u8; 11]>, FatError> {
    let bad = |reason| FatError::Label {
        label: label.into(),
        reason,
    };
    if label.is_empty() {
        return Ok(None);
    }
    if label.len() > 11 {
        return Err(bad("longer than 11 characters"));
    }
    if !label.bytes().all(|c| c == b' ' || dir::short_char_ok(c)) || label.starts_with(' ') {
        return Err(bad(
            "only A-Z, 0-9, space (not first) and $%'-_@~`!(){}^#& are allowed",
        ));
    }
    let mut b = [b' '; 11];
    b[..label.len()].copy_from_slice(label.as_bytes());
    Ok(Some(b))
}

/// A directory or file in allocation (walk) order.
struct Item {
    path: PathBuf,
    body: Body,
    /// First data cluster (0 for an empty file and the FAT12/16 root).
    first: u32,
    clusters: u32,
}

enum Body {
    /// Entries in name order, each with the index of its item.
    Dir {
        entries: Vec<(DirEntry, usize)>,
        parent: Option<usize>,
    },
    File(Content),
}

impl Item {
    /// 32-byte slots of a directory, including `.` and `..` (subdirs) or
    /// the volume label (the root, when there is one).
    fn slots(&self, label: bool) -> u32 {
        match &self.body {
            Body::Dir { entries, parent } => {
                let own = if parent.is_some() {
                    2
                } else {
                    u32::from(label)
                };
                own + entries.iter().map(|(e, _)| e.slots()).sum::<u32>()
            }
            Body::File(_) => 0,
        }
    }

    /// Bytes the item takes in the data region before cluster rounding.
    fn bytes(&self, label: bool) -> u64 {
        match &self.body {
            Body::Dir { .. } => u64::from(self.slots(label) * DIR_ENTRY),
            Body::File(c) => c.len(),
        }
    }
}

/// Everything decided before the first byte is written.
struct Plan {
    items: Vec<Item>,
    geometry: Geometry,
    label: Option<[u8; 11]>,
    layout: FatLayout,
}

impl Plan {
    fn new(tree: &FsTree, opts: &FatOptions) -> Result<Plan, FatError> {
        let label = label_bytes(&opts.label)?;
        let mut items = Vec::new();
        collect(tree.root(), PathBuf::new(), None, &mut items)?;
        let geometry = size_volume(&items, label.is_some(), opts)?;
        let used = allocate(&mut items, &geometry, label.is_some());
        let cluster_size = geometry.cluster_bytes();
        let files = items
            .iter()
            .filter(|i| matches!(i.body, Body::File(_)) && i.clusters > 0)
            .map(|i| {
                let ext = FatExtent {
                    offset: geometry.cluster_offset(i.first),
                    len: i.bytes(false),
                };
                (i.path.clone(), ext)
            })
            .collect();
        let layout = FatLayout {
            size: u64::from(geometry.total_sectors) * u64::from(SECTOR),
            kind: geometry.kind,
            cluster_size,
            clusters: geometry.clusters,
            free_clusters: geometry.clusters - used,
            files,
        };
        Ok(Plan {
            items,
            geometry,
            label,
            layout,
        })
    }
}

/// Appends `dir` and everything below it to `items` in walk order and
/// returns its index. Short names are assigned per directory, exact 8.3
/// names first so generated ones never take them.
fn collect(
    dir: &Dir,
    path: PathBuf,
    parent: Option<usize>,
    items: &mut Vec<Item>,
) -> Result<usize, FatError> {
    let idx = items.len();
    items.push(Item {
        path: path.clone(),
        body: Body::Dir {
            entries: Vec::new(),
            parent,
        },
        first: 0,
        clusters: 0,
    });
    let mut names = ShortNames::default();
    let mut seen = std::collections::HashSet::new();
    let strs = dir
        .entries
        .keys()
        .map(|n| name_str(n, &path.join(n)))
        .collect::<Result<Vec<_>, _>>()?;
    names.reserve_exact(strs.iter().copied());
    let mut entries = Vec::with_capacity(dir.entries.len());
    for ((os, node), name) in dir.entries.iter().zip(strs) {
        let child_path = path.join(os);
        if !seen.insert(name.to_uppercase()) {
            return Err(unrep(
                &child_path,
                "a name that differs from another only in case",
            ));
        }
        let (short, needs_long) = names.assign(name);
        let long = needs_long.then(|| name.encode_utf16().collect::<Vec<u16>>());
        let (attr, size, child) = match node {
            Node::Dir(d) => (ATTR_DIRECTORY, 0, collect(d, child_path, Some(idx), items)?),
            Node::Leaf(inode) => {
                let LeafKind::File(content) = &inode.kind else {
                    return Err(unrep(
                        &child_path,
                        "a node that is not a directory or regular file",
                    ));
                };
                let size = u32::try_from(content.len())
                    .map_err(|_| unrep(&child_path, "a file of 4 GiB or more"))?;
                items.push(Item {
                    path: child_path,
                    body: Body::File(content.clone()),
                    first: 0,
                    clusters: 0,
                });
                (ATTR_ARCHIVE, size, items.len() - 1)
            }
        };
        let entry = DirEntry {
            short,
            long,
            attr,
            first_cluster: 0,
            size,
        };
        entries.push((entry, child));
    }
    if let Body::Dir { entries: e, .. } = &mut items[idx].body {
        *e = entries;
    }
    Ok(idx)
}

/// A name as UTF-8 that a long-name entry can hold.
fn name_str<'a>(name: &'a OsStr, path: &Path) -> Result<&'a str, FatError> {
    let s = name
        .to_str()
        .ok_or_else(|| unrep(path, "a name that is not UTF-8"))?;
    if !dir::long_name_ok(s) {
        return Err(unrep(
            path,
            "a name with a character FAT forbids (\"*/:<>?\\| or control)",
        ));
    }
    if s.encode_utf16().count() > dir::MAX_LONG_NAME {
        return Err(unrep(path, "a name longer than 255 UTF-16 units"));
    }
    Ok(s)
}

/// Clusters every item needs with `g`'s cluster size (the FAT12/16 root
/// lives outside the data region; other directories take at least one).
fn clusters_needed(items: &[Item], g: &Geometry, label: bool) -> u64 {
    let cs = u64::from(g.cluster_bytes());
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.body {
            Body::Dir { .. } if i == 0 && g.kind != FatType::Fat32 => 0,
            Body::Dir { .. } => item.bytes(label).div_ceil(cs).max(1),
            Body::File(_) => item.bytes(label).div_ceil(cs),
        })
        .sum()
}

/// The geometry: for the given size, or the smallest that fits.
fn size_volume(items: &[Item], label: bool, opts: &FatOptions) -> Result<Geometry, FatError> {
    let root_entries = items[0].slots(label);
    let kind_name = opts.kind.map_or("FAT".to_string(), |k| format!("{k:?}"));
    let no_geometry = |sectors: u64| FatError::NoGeometry {
        kind: kind_name.clone(),
        size: sectors * u64::from(SECTOR),
    };
    if let Some(size) = opts.size {
        if size % u64::from(SECTOR) != 0 {
            return Err(FatError::BadSize(size));
        }
        let sectors =
            u32::try_from(size / u64::from(SECTOR)).map_err(|_| no_geometry(size / 512))?;
        let g = Geometry::choose(opts.kind, sectors, root_entries)
            .ok_or_else(|| no_geometry(size / 512))?;
        let need = clusters_needed(items, &g, label);
        if need > u64::from(g.clusters) {
            return Err(FatError::DoesNotFit {
                need,
                have: g.clusters,
                cluster_size: g.cluster_bytes(),
                size,
            });
        }
        return Ok(g);
    }
    let data: u64 = items.iter().map(|i| i.bytes(label)).sum();
    let mut sectors = (data / u64::from(SECTOR) + u64::from(RESERVED_FAT32))
        .next_multiple_of(u64::from(SIZE_STEP));
    loop {
        let s = u32::try_from(sectors).map_err(|_| no_geometry(sectors))?;
        if let Some(g) = Geometry::choose(opts.kind, s, root_entries) {
            let need = clusters_needed(items, &g, label);
            let slack = (need / 32).max(65_536 / u64::from(g.cluster_bytes()));
            if need + slack <= u64::from(g.clusters) {
                return Ok(g);
            }
        }
        sectors = (sectors + (sectors / 64).max(1)).next_multiple_of(u64::from(SIZE_STEP));
    }
}

/// Gives every item its clusters in order from cluster 2 and fills in the
/// directory entries' first clusters; returns the clusters used.
fn allocate(items: &mut [Item], g: &Geometry, label: bool) -> u32 {
    let cs = u64::from(g.cluster_bytes());
    let mut next = 2u32;
    for (i, item) in items.iter_mut().enumerate() {
        let n = match item.body {
            Body::Dir { .. } if i == 0 && g.kind != FatType::Fat32 => 0,
            Body::Dir { .. } => item.bytes(label).div_ceil(cs).max(1),
            Body::File(_) => item.bytes(label).div_ceil(cs),
        } as u32;
        item.clusters = n;
        if n > 0 {
            item.first = next;
            next += n;
        }
    }
    let firsts: Vec<u32> = items.iter().map(|i| i.first).collect();
    for item in items.iter_mut() {
        if let Body::Dir { entries, .. } = &mut item.body {
            for (e, child) in entries {
                e.first_cluster = firsts[*child];
            }
        }
    }
    next - 2
}

impl Plan {
    fn write(&self, opts: &FatOptions, out: &mut impl Write) -> Result<(), FatError> {
        self.write_reserved(opts, out).map_err(meta_io)?;
        for _ in 0..geometry::NUM_FATS {
            self.write_fat_table(out).map_err(meta_io)?;
        }
        let stamp = DosTime::from_unix(opts.mtime);
        let g = &self.geometry;
        let cs = u64::from(g.cluster_bytes());
        for (i, item) in self.items.iter().enumerate() {
            let io = |source| WriteError::Io {
                path: item.path.clone(),
                source,
            };
            let (len, room) = match &item.body {
                Body::Dir { .. } if i == 0 && g.kind != FatType::Fat32 => {
                    let bytes = self.dir_bytes(0, stamp);
                    out.write_all(&bytes).map_err(io)?;
                    (bytes.len() as u64, u64::from(g.root_sectors() * SECTOR))
                }
                Body::Dir { .. } => {
                    let bytes = self.dir_bytes(i, stamp);
                    out.write_all(&bytes).map_err(io)?;
                    (bytes.len() as u64, u64::from(item.clusters) * cs)
                }
                Body::File(c) => (
                    copy_content(c, &item.path, out)?,
                    u64::from(item.clusters) * cs,
                ),
            };
            write_zeros(out, room - len).map_err(io)?;
        }
        let written =
            g.data_start().bytes() + u64::from(g.clusters - self.layout.free_clusters) * cs;
        write_zeros(out, self.layout.size - written).map_err(meta_io)?;
        Ok(())
    }

    /// Boot sector; on FAT32 also FSInfo, the backup boot sector and its
    /// FSInfo copy (fatgen103 §3.3: `BPB_BkBootSec` = 6, FSInfo copy at 7).
    fn write_reserved(&self, opts: &FatOptions, out: &mut impl Write) -> std::io::Result<()> {
        let g = &self.geometry;
        let boot = BootSector {
            geometry: *g,
            hidden_sectors: opts.hidden_sectors,
            volume_id: opts.volume_id,
            label: self.label.unwrap_or(*NO_NAME),
        }
        .encode();
        out.write_all(&boot)?;
        if g.kind != FatType::Fat32 {
            return write_zeros(out, u64::from((g.reserved_sectors - 1) * SECTOR));
        }
        let used = g.clusters - self.layout.free_clusters;
        let fsinfo = FsInfo {
            free_count: self.layout.free_clusters,
            next_free: if self.layout.free_clusters > 0 {
                used + 2
            } else {
                u32::MAX
            },
        }
        .encode();
        for sector in 1..g.reserved_sectors {
            match sector {
                FSINFO_SECTOR => out.write_all(&fsinfo)?,
                BACKUP_BOOT_SECTOR => out.write_all(&boot)?,
                s if s == BACKUP_BOOT_SECTOR + FSINFO_SECTOR => out.write_all(&fsinfo)?,
                _ => out.write_all(&[0u8; SECTOR as usize])?,
            }
        }
        Ok(())
    }

    /// One FAT, streamed in chunks: entry 0 holds the media byte, entry 1
    /// end-of-chain, then each item's run of consecutive clusters is a chain
    /// ending in end-of-chain (fatgen103 §4), then free (0) entries.
    fn write_fat_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let kind = self.geometry.kind;
        let mask: u32 = match kind {
            FatType::Fat12 => 0xFFF,
            FatType::Fat16 => 0xFFFF,
            FatType::Fat32 => 0x0FFF_FFFF,
        };
        let mut run_ends: Vec<u32> = self
            .items
            .iter()
            .filter(|i| i.clusters > 0)
            .map(|i| i.first + i.clusters - 1)
            .collect();
        run_ends.sort_unstable();
        let used_end = run_ends.last().map_or(2, |e| e + 1);
        let entry = |n: u32| match n {
            0 => (0x0FFF_FF00 | u32::from(MEDIA)) & mask,
            1 => mask,
            n if n >= used_end => 0,
            n if run_ends.binary_search(&n).is_ok() => mask,
            n => n + 1,
        };
        // 3072 bytes hold a whole number of 12-, 16- and 32-bit entries.
        const CHUNK: usize = 3072;
        let per_chunk = (CHUNK * 8) as u32 / kind.bits();
        let mut left = u64::from(self.geometry.fat_sectors * SECTOR);
        let mut buf = vec![0u8; CHUNK];
        let mut base = 0u32;
        while left > 0 {
            encode_fat(kind, base, per_chunk, &entry, &mut buf);
            let n = left.min(CHUNK as u64) as usize;
            out.write_all(&buf[..n])?;
            left -= n as u64;
            base += per_chunk;
        }
        Ok(())
    }

    /// The encoded entries of directory item `i`.
    fn dir_bytes(&self, i: usize, stamp: DosTime) -> Vec<u8> {
        let item = &self.items[i];
        let Body::Dir { entries, parent } = &item.body else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity((item.slots(true) * DIR_ENTRY) as usize);
        match (parent, self.label) {
            (Some(p), _) => {
                // `..` of a first-level directory is cluster 0, even on FAT32
                // whose root is a cluster chain (fatgen103 §6.7).
                let parent_cluster = if *p == 0 { 0 } else { self.items[*p].first };
                for e in dir::dot_entries(item.first, parent_cluster) {
                    e.encode(stamp, &mut out);
                }
            }
            (None, Some(label)) => DirEntry {
                short: label,
                long: None,
                attr: ATTR_VOLUME_ID,
                first_cluster: 0,
                size: 0,
            }
            .encode(stamp, &mut out),
            (None, None) => {}
        }
        for (e, _) in entries {
            e.encode(stamp, &mut out);
        }
        out
    }
}

/// Encodes FAT entries `base..base + count` into `buf`.
fn encode_fat(kind: FatType, base: u32, count: u32, entry: &impl Fn(u32) -> u32, buf: &mut [u8]) {
    match kind {
        FatType::Fat12 => {
            for pair in 0..count / 2 {
                let (a, b) = (entry(base + 2 * pair), entry(base + 2 * pair + 1));
                let o = pair as usize * 3;
                buf[o] = a as u8;
                buf[o + 1] = ((a >> 8) & 0x0F) as u8 | ((b & 0x0F) << 4) as u8;
                buf[o + 2] = (b >> 4) as u8;
            }
        }
        FatType::Fat16 => {
            for k in 0..count {
                let o = k as usize * 2;
                buf[o..o + 2].copy_from_slice(&(entry(base + k) as u16).to_le_bytes());
            }
        }
        FatType::Fat32 => {
            for k in 0..count {
                let o = k as usize * 4;
                buf[o..o + 4].copy_from_slice(&entry(base + k).to_le_bytes());
            }
        }
    }
}

pub(crate) fn write_zeros(out: &mut impl Write, mut n: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 65_536] = [0; 65_536];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}
