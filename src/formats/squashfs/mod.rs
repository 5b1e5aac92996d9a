//! Squashfs 4.0 writer: an [`FsTree`] to an image the Linux kernel mounts
//! and squashfs-tools reads.
//!
//! The format is described by the kernel's `fs/squashfs/squashfs_fs.h` and,
//! in prose, by squashfs-tools-ng's `doc/format.txt` (section numbers below
//! refer to it). Image layout, in the order the kernel's superblock checks
//! require (fs/squashfs/super.c checks each table ends before the next):
//!
//! ```text
//! superblock (96 B) [compressor options] data and fragment blocks
//! inode table  directory table  fragment table  id table  [xattr tables]
//! zero padding to 4 KiB
//! ```
//!
//! What is stored: every node kind, with basic inodes where they suffice and
//! extended ones for xattrs, hardlinks (nlink > 1), sparse or large files and
//! big directories (with a directory index); permission bits, uid/gid (id
//! table), mtimes and xattrs in the `user.`, `trusted.` and `security.`
//! namespaces. The root directory carries the tree root's metadata.
//!
//! How data is stored (see `data.rs`): files are cut into `block_size`
//! blocks compressed in parallel and written in order, so the bytes never
//! depend on `threads`; a block that does not shrink is stored raw; an
//! all-zero block is stored as a 0-size (sparse) block; tail ends (and whole
//! files under a block) are packed into fragment blocks, in file order, for
//! every file (mksquashfs's `-tailends`, flag "always-use-fragments");
//! identical files are stored once (by size and SHA-256). Metadata goes in
//! 8 KiB blocks compressed with the same compressor. Compressor options are
//! written only when they differ from the kernel's and squashfs-tools'
//! defaults (zstd level 15, gzip level 9), as mksquashfs does.
//!
//! Deterministic: the same tree and options give the same bytes; the only
//! clock is `mkfs_time`. The superblock is written last, so an interrupted
//! write never leaves a valid-looking image.
//!
//! Non-goals: an NFS export table (the flag is clear), lz4/lzo/lzma1,
//! compressing with BCJ filters, xattr values stored out of line, xattr
//! namespaces other than the three above (an error, not dropped silently),
//! appending to an image, reading images. A content source longer than its
//! recorded length is read only up to that length (`Content::open` stops
//! there); a shorter one is an error naming the path.

#[cfg(test)]
mod bench;
#[cfg(test)]
mod check;
mod compressor;
mod data;
mod layout;
mod metadata;
mod tables;
#[cfg(test)]
mod tests;

use std::io::{self, BufWriter, Seek, SeekFrom, Write};

use crate::formats::{IO_BUFFER, WriteError};
use crate::tree::FsTree;

use compressor::BlockCompressor;
use data::{FileSource, ImageOut};
use layout::{
    COMP_GZIP, COMP_XZ, COMP_ZSTD, DEVICE_BLOCK, FLAG_ALWAYS_FRAGMENTS, FLAG_COMP_OPTS,
    FLAG_DUPLICATES, FLAG_NO_XATTRS, FragmentEntry, INVALID_TABLE, METADATA_UNCOMPRESSED,
    SUPERBLOCK_LEN, SuperBlock, XattrId, XattrTableHeader,
};

/// Smallest and largest data block sizes, in bytes (format.txt 3).
pub const MIN_BLOCK_SIZE: u32 = 4 * 1024;
pub const MAX_BLOCK_SIZE: u32 = 1024 * 1024;
/// mksquashfs's default data block size: 128 KiB.
pub const DEFAULT_BLOCK_SIZE: u32 = 128 * 1024;
/// zstd level squashfs-tools uses when none is given (and the kernel assumes
/// when no compressor options are stored).
pub const DEFAULT_ZSTD_LEVEL: i32 = 15;
/// gzip (zlib) level squashfs-tools uses when none is given.
pub const DEFAULT_GZIP_LEVEL: u32 = 9;
/// xz preset squashfs-tools uses (liblzma's default).
pub const DEFAULT_XZ_LEVEL: u32 = 6;

/// The compressor for data and metadata blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SquashfsCompression {
    /// zlib streams, levels 1–9.
    Gzip { level: u32 },
    /// `.xz` streams (LZMA2, CRC32, dictionary = block size), presets 0–9.
    Xz { level: u32 },
    /// zstd frames, levels 1–22.
    Zstd { level: i32 },
}

impl Default for SquashfsCompression {
    /// zstd at level 15, mksquashfs's `-comp zstd` default.
    fn default() -> Self {
        SquashfsCompression::Zstd {
            level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

/// Options for [`write_squashfs`].
#[derive(Clone, Debug)]
pub struct SquashfsOptions {
    /// Default: zstd level 15.
    pub compression: SquashfsCompression,
    /// Data block size in bytes: a power of two from 4 KiB to 1 MiB.
    /// Default 128 KiB.
    pub block_size: u32,
    /// The superblock's creation time, seconds since the epoch (use
    /// `SOURCE_DATE_EPOCH`); 0..2^32. Default 0.
    pub mkfs_time: i64,
    /// Compression workers (at least 1 and at most 256 are used). The
    /// image bytes do not depend on it. Default: the available CPUs.
    pub threads: usize,
}

impl Default for SquashfsOptions {
    fn default() -> Self {
        SquashfsOptions {
            compression: SquashfsCompression::default(),
            block_size: DEFAULT_BLOCK_SIZE,
            mkfs_time: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What [`write_squashfs`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SquashfsInfo {
    /// The superblock's `bytes_used`: the image without padding.
    pub bytes_used: u64,
    /// Bytes written, padding included (a multiple of 4 KiB).
    pub image_size: u64,
    pub inodes: u32,
    pub fragments: u32,
    /// Distinct uids and gids.
    pub ids: u16,
    /// Distinct xattr sets.
    pub xattr_ids: u32,
    /// Files stored as references to an identical earlier file.
    pub duplicates: u32,
}

/// Errors from [`write_squashfs`].
#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    /// Reading content, short content, or a node squashfs cannot store;
    /// each names the path.
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("writing squashfs image: {0}")]
    Io(#[source] io::Error),
    #[error("squashfs compressor: {0}")]
    Compress(#[source] io::Error),
    #[error("invalid squashfs options: {0}")]
    Options(String),
    #[error("squashfs limit: more than {limit} {what}")]
    Limit { what: &'static str, limit: u64 },
    #[error("squashfs writer: {0}")]
    Internal(&'static str),
}

impl SquashfsOptions {
    fn validate(&self) -> Result<(), SquashfsError> {
        let bad = |m: String| Err(SquashfsError::Options(m));
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
            return bad(format!(
                "block size {bs} is not a power of two from 4096 to 1048576"
            ));
        }
        match self.compression {
            SquashfsCompression::Gzip { level } if !(1..=9).contains(&level) => {
                bad(format!("gzip level {level} is not 1..=9"))
            }
            SquashfsCompression::Xz { level } if level > 9 => {
                bad(format!("xz level {level} is not 0..=9"))
            }
            SquashfsCompression::Zstd { level } if !(1..=22).contains(&level) => {
                bad(format!("zstd level {level} is not 1..=22"))
            }
            _ => Ok(()),
        }
    }

    /// The compressor id and, when not the defaults, the compressor options
    /// payload (format.txt 3.1).
    fn compressor_id_and_options(&self) -> (u16, Option<Vec<u8>>) {
        match self.compression {
            SquashfsCompression::Gzip { level } => {
                let opts = (level != DEFAULT_GZIP_LEVEL).then(|| {
                    // level u32, window size u16 (15), strategies u16 (none).
                    let mut o = level.to_le_bytes().to_vec();
                    o.extend_from_slice(&15u16.to_le_bytes());
                    o.extend_from_slice(&0u16.to_le_bytes());
                    o
                });
                (COMP_GZIP, opts)
            }
            // Dictionary = block size and no filters are the defaults.
            SquashfsCompression::Xz { .. } => (COMP_XZ, None),
            SquashfsCompression::Zstd { level } => {
                let opts = (level != DEFAULT_ZSTD_LEVEL).then(|| level.to_le_bytes().to_vec());
                (COMP_ZSTD, opts)
            }
        }
    }
}

/// Writes `tree` as a squashfs image to `out`, starting at its current
/// position (offsets inside the image are relative to that position). On
/// success `out` is positioned at the end of the padded image.
pub fn write_squashfs<W: Write + Seek>(
    tree: &FsTree,
    opts: &SquashfsOptions,
    out: &mut W,
) -> Result<SquashfsInfo, SquashfsError> {
    opts.validate()?;
    let mkfs_time = u32::try_from(opts.mkfs_time).map_err(|_| {
        SquashfsError::Options(format!("mkfs time {} is not 0..2^32", opts.mkfs_time))
    })?;
    let base = out.stream_position().map_err(SquashfsError::Io)?;
    let (compression, comp_opts) = opts.compressor_id_and_options();
    let mut img = ImageOut {
        out: BufWriter::with_capacity(IO_BUFFER, &mut *out),
        pos: 0,
    };
    // Zeros where the superblock goes once everything else is written.
    img.write(&[0u8; SUPERBLOCK_LEN])?;
    if let Some(o) = &comp_opts {
        // Always an uncompressed metadata block (format.txt 3.1).
        img.write(&(o.len() as u16 | METADATA_UNCOMPRESSED).to_le_bytes())?;
        img.write(o)?;
    }
    let plan = tables::Plan::new(tree);
    let sources: Vec<FileSource<'_>> = plan
        .files
        .iter()
        .map(|(path, content)| FileSource { path, content })
        .collect();
    let area = data::write_data(&sources, opts, &mut img)?;
    drop(sources);
    let mut comp =
        BlockCompressor::new(opts.compression, opts.block_size).map_err(SquashfsError::Compress)?;
    let t = tables::build(tree, &plan, &area.files, &mut comp)?;
    let mut sb = SuperBlock {
        inodes: t.inodes,
        mkfs_time,
        block_size: opts.block_size,
        fragments: u32::try_from(area.fragments.len()).map_err(|_| SquashfsError::Limit {
            what: "fragment blocks",
            limit: u32::MAX.into(),
        })?,
        compression,
        block_log: opts.block_size.trailing_zeros() as u16,
        flags: FLAG_ALWAYS_FRAGMENTS | FLAG_DUPLICATES,
        // `Ids` refuses more than u16::MAX.
        ids: t.ids.len() as u16,
        root_inode: t.root.packed(),
        export_table: INVALID_TABLE,
        xattr_id_table: INVALID_TABLE,
        ..SuperBlock::default()
    };
    if comp_opts.is_some() {
        sb.flags |= FLAG_COMP_OPTS;
    }
    let xattr_ids = write_tables(&t, &area.fragments, &mut sb, &mut img, &mut comp)?;
    sb.bytes_used = img.pos;
    let image_size = sb.bytes_used.next_multiple_of(DEVICE_BLOCK);
    img.write(&vec![0u8; (image_size - sb.bytes_used) as usize])?;
    let out = img
        .out
        .into_inner()
        .map_err(|e| SquashfsError::Io(e.into_error()))?;
    write_superblock(out, base, image_size, &sb).map_err(SquashfsError::Io)?;
    Ok(SquashfsInfo {
        bytes_used: sb.bytes_used,
        image_size,
        inodes: sb.inodes,
        fragments: sb.fragments,
        ids: sb.ids,
        xattr_ids,
        duplicates: area.duplicates,
    })
}

/// Writes the tables after the data, in the order the kernel requires,
/// recording their offsets in `sb`; returns the number of xattr ids.
fn write_tables<W: Write>(
    t: &tables::Tables,
    fragments: &[FragmentEntry],
    sb: &mut SuperBlock,
    img: &mut ImageOut<W>,
    comp: &mut BlockCompressor,
) -> Result<u32, SquashfsError> {
    sb.inode_table = img.pos;
    img.write(&t.inode_table)?;
    sb.directory_table = img.pos;
    img.write(&t.directory_table)?;
    sb.fragment_table = write_fragment_table(fragments, img, comp)?;
    let ids: Vec<u8> = t.ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    sb.id_table = write_lookup_table(&ids, img, comp)?;
    let xattr_ids = match &t.xattrs {
        Some((kv, records)) => {
            sb.xattr_id_table = write_xattr_tables(kv, records, img, comp)?;
            records.len() as u32
        }
        None => {
            sb.flags |= FLAG_NO_XATTRS;
            0
        }
    };
    Ok(xattr_ids)
}

fn write_superblock<W: Write + Seek>(
    out: &mut W,
    base: u64,
    image_size: u64,
    sb: &SuperBlock,
) -> io::Result<()> {
    out.seek(SeekFrom::Start(base))?;
    out.write_all(&sb.to_bytes())?;
    out.seek(SeekFrom::Start(base + image_size))?;
    out.flush()
}

/// Writes a lookup table's blocks then their location list; returns the
/// list's offset, which is what the superblock points at.
fn write_lookup_table<W: Write>(
    records: &[u8],
    img: &mut ImageOut<W>,
    comp: &mut BlockCompressor,
) -> Result<u64, SquashfsError> {
    let (blocks, list) =
        metadata::lookup_table(records, img.pos, comp).map_err(SquashfsError::Compress)?;
    img.write(&blocks)?;
    let at = img.pos;
    img.write(&list)?;
    Ok(at)
}

fn write_fragment_table<W: Write>(
    fragments: &[FragmentEntry],
    img: &mut ImageOut<W>,
    comp: &mut BlockCompressor,
) -> Result<u64, SquashfsError> {
    let mut records = Vec::with_capacity(fragments.len() * FragmentEntry::LEN);
    fragments.iter().for_each(|f| f.write(&mut records));
    write_lookup_table(&records, img, comp)
}

/// The key/value blocks, the xattr id table's blocks, then its header and
/// block locations (format.txt 10); returns the header's offset.
fn write_xattr_tables<W: Write>(
    kv: &[u8],
    records: &[XattrId],
    img: &mut ImageOut<W>,
    comp: &mut BlockCompressor,
) -> Result<u64, SquashfsError> {
    let kv_start = img.pos;
    img.write(kv)?;
    let mut ids = Vec::with_capacity(records.len() * XattrId::LEN);
    records.iter().for_each(|r| r.write(&mut ids));
    let (blocks, list) =
        metadata::lookup_table(&ids, img.pos, comp).map_err(SquashfsError::Compress)?;
    img.write(&blocks)?;
    let at = img.pos;
    let mut header = Vec::new();
    XattrTableHeader {
        kv_start,
        ids: records.len() as u32,
    }
    .write(&mut header);
    img.write(&header)?;
    img.write(&list)?;
    Ok(at)
}
