//! qcow2 version 3 writer: turns a raw disk image into a sparse qcow2 file,
//! written strictly sequentially (qemu's docs/interop/qcow2.txt; section
//! names below are that file's).
//!
//! Fixed choices: 64 KiB clusters, 16-bit refcounts (refcount_order 4), no
//! compression, encryption, backing file, snapshots, header extensions or
//! feature bits (so `compat` is 1.1 with no features). A guest cluster that is
//! all zeros is left unallocated (its L2 entry is 0, which reads as zeros
//! because there is no backing file); every other cluster is stored.
//!
//! Layout, in host clusters, computed before anything is written:
//! header | L1 table | refcount table | refcount blocks | L2 tables | data.
//! Every allocated cluster has refcount 1 and every L1/L2 entry carries the
//! COPIED flag, as `qemu-img check` expects of an image without snapshots.
//! Data clusters follow guest order, so the bytes depend only on the input.
//!
//! The input is read twice from offset 0: once to find the non-zero clusters,
//! once to copy them. The second pass hashes what it copies and compares it
//! with the first, so an input that changed in between (in a stored cluster)
//! is an error, not a silently inconsistent image.
//!
//! Reading ([`Qcow2Map`], in `map.rs`) covers one thing: mapping a guest byte offset to
//! the host offset of its stored cluster, so `smelt inject` can rewrite
//! clusters the writer kept allocated ([`Qcow2Options::keep_allocated`]).
//!
//! Non-goals: general qcow2 reading, other cluster sizes for writing, compressed or zero-flagged
//! clusters, images larger than [`MAX_VIRTUAL_SIZE`].

use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use sha2::{Digest as _, Sha256};

use super::{CountingWriter, IO_BUFFER};

mod map;
pub use map::{HostExtent, Qcow2Map};

/// `magic`: "QFI\xfb".
const MAGIC: &[u8; 4] = b"QFI\xfb";
/// Format version written (v3, what qemu-img calls compat=1.1).
const VERSION: u32 = 3;
/// log2 of the cluster size.
const CLUSTER_BITS: u32 = 16;
/// Bytes per cluster: 64 KiB, qemu's default.
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// log2 of the refcount width in bits: 16-bit refcounts.
const REFCOUNT_ORDER: u32 = 4;
/// Bytes per refcount block entry.
const REFCOUNT_BYTES: u64 = (1 << REFCOUNT_ORDER) / 8;
/// Host clusters one refcount block describes (32,768: 2 GiB of file).
const CLUSTERS_PER_REFBLOCK: u64 = CLUSTER_SIZE / REFCOUNT_BYTES;
/// Bytes per L1, L2 and refcount table entry.
const ENTRY_BYTES: u64 = 8;
/// Entries per L2 table (8,192: one L2 table maps 512 MiB of guest).
const L2_ENTRIES: u64 = CLUSTER_SIZE / ENTRY_BYTES;
/// `header_length` of a v3 header without optional fields (bytes).
const HEADER_LENGTH: u32 = 104;
/// L1/L2 entry bit 63, "COPIED": the cluster's refcount is exactly one.
const OFLAG_COPIED: u64 = 1 << 63;
/// Virtual sizes are whole 512-byte sectors: qemu's block layer truncates a
/// qcow2 `size` to sectors, so a raw tail is padded with zeros up to one.
const SECTOR_SIZE: u64 = 512;
/// Largest virtual disk accepted: 16 TiB (the first pass keeps a one-bit-per
/// -cluster map: 32 MiB at this size).
pub const MAX_VIRTUAL_SIZE: u64 = 16 << 40;

/// What [`write_qcow2`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qcow2Info {
    /// Guest-visible size in bytes (the raw length rounded up to 512).
    pub virtual_size: u64,
    /// Bytes written: the qcow2 file's length.
    pub file_size: u64,
    /// Guest clusters stored (the rest were all zero).
    pub data_clusters: u64,
    /// L2 tables stored.
    pub l2_tables: u64,
}

/// Errors from [`write_qcow2`].
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("reading raw image at byte {offset}: {source}")]
    Read {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("raw image ended at byte {got}, expected {expected} bytes")]
    ShortInput { expected: u64, got: u64 },
    #[error("raw image changed while it was converted: {what}")]
    Changed { what: String },
    #[error("writing qcow2 at byte {offset}: {source}")]
    Write {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("raw image of {0} bytes is larger than the 16 TiB supported")]
    TooBig(u64),
    #[error("range {start}..{end} to keep allocated is outside the {len}-byte raw image")]
    KeepOutside { start: u64, end: u64, len: u64 },
    #[error("not a qcow2 image: {0}")]
    NotQcow2(String),
    #[error("qcow2 header byte {offset}: {what}")]
    Unsupported { offset: u64, what: String },
    #[error("qcow2 guest byte {guest}: {what}")]
    Unmapped { guest: u64, what: String },
}

/// The v3 header (section "Header"), all fields big-endian. Fields written
/// as zero and not stored here: backing_file_offset (8) and _size (16),
/// crypt_method (32), nb_snapshots (60), snapshots_offset (64),
/// incompatible/compatible/autoclear_features (72, 80, 88).
struct Header {
    /// `size` (offset 24): virtual disk size in bytes.
    size: u64,
    /// `l1_size` (offset 36): entries in the active L1 table.
    l1_size: u32,
    /// `l1_table_offset` (offset 40): cluster-aligned.
    l1_table_offset: u64,
    /// `refcount_table_offset` (offset 48): cluster-aligned.
    refcount_table_offset: u64,
    /// `refcount_table_clusters` (offset 56).
    refcount_table_clusters: u32,
}

impl Header {
    /// The whole first cluster: header, then zeros (which also read as the
    /// end-of-extensions marker, type 0, at `header_length`).
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; CLUSTER_SIZE as usize];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&VERSION.to_be_bytes());
        b[20..24].copy_from_slice(&CLUSTER_BITS.to_be_bytes());
        b[24..32].copy_from_slice(&self.size.to_be_bytes());
        b[36..40].copy_from_slice(&self.l1_size.to_be_bytes());
        b[40..48].copy_from_slice(&self.l1_table_offset.to_be_bytes());
        b[48..56].copy_from_slice(&self.refcount_table_offset.to_be_bytes());
        b[56..60].copy_from_slice(&self.refcount_table_clusters.to_be_bytes());
        b[96..100].copy_from_slice(&REFCOUNT_ORDER.to_be_bytes());
        b[100..104].copy_from_slice(&HEADER_LENGTH.to_be_bytes());
        b
    }
}

/// Which guest clusters hold data, one bit each.
struct ClusterMap {
    bits: Vec<u64>,
    len: u64,
}

impl ClusterMap {
    fn new(len: u64) -> ClusterMap {
        ClusterMap {
            bits: vec![0; len.div_ceil(64) as usize],
            len,
        }
    }
    fn set(&mut self, i: u64) {
        self.bits[(i / 64) as usize] |= 1 << (i % 64);
    }
    fn get(&self, i: u64) -> bool {
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
    /// Set bits in `range` of cluster indices.
    fn count(&self, range: std::ops::Range<u64>) -> u64 {
        range.filter(|&i| self.get(i)).count() as u64
    }
}

/// Host-cluster layout of the output; indices are host cluster numbers.
struct Layout {
    virtual_size: u64,
    map: ClusterMap,
    /// L1 entries (one per 512 MiB of guest).
    l1_entries: u64,
    l1_clusters: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    /// L1 indices that have an L2 table, ascending.
    l2_present: Vec<u64>,
    data_clusters: u64,
}

impl Layout {
    fn new(virtual_size: u64, map: ClusterMap) -> Layout {
        let l1_entries = map.len.div_ceil(L2_ENTRIES);
        let l2_present: Vec<u64> = (0..l1_entries)
            .filter(|&i| map.count(i * L2_ENTRIES..((i + 1) * L2_ENTRIES).min(map.len)) > 0)
            .collect();
        let data_clusters = map.count(0..map.len);
        // An empty disk has no L1 table (offset 0), as qemu-img creates it.
        let l1_clusters = (l1_entries * ENTRY_BYTES).div_ceil(CLUSTER_SIZE);
        let fixed = 1 + l1_clusters + l2_present.len() as u64 + data_clusters;
        // Refcount blocks must count themselves and the table: iterate to the
        // fixed point (it grows monotonically and settles in a step or two).
        let (mut table, mut blocks) = (1, 1);
        loop {
            let total = fixed + table + blocks;
            let b = total.div_ceil(CLUSTERS_PER_REFBLOCK);
            let t = (b * ENTRY_BYTES).div_ceil(CLUSTER_SIZE);
            if (t, b) == (table, blocks) {
                break;
            }
            (table, blocks) = (t, b);
        }
        Layout {
            virtual_size,
            map,
            l1_entries,
            l1_clusters,
            refcount_table_clusters: table,
            refcount_blocks: blocks,
            l2_present,
            data_clusters,
        }
    }

    fn refcount_table_start(&self) -> u64 {
        1 + self.l1_clusters
    }
    fn refcount_blocks_start(&self) -> u64 {
        self.refcount_table_start() + self.refcount_table_clusters
    }
    fn l2_start(&self) -> u64 {
        self.refcount_blocks_start() + self.refcount_blocks
    }
    fn data_start(&self) -> u64 {
        self.l2_start() + self.l2_present.len() as u64
    }
    fn total_clusters(&self) -> u64 {
        self.data_start() + self.data_clusters
    }

    fn header(&self) -> Header {
        Header {
            size: self.virtual_size,
            // l1_entries ≤ 16 TiB / 512 MiB = 32,768: fits.
            l1_size: self.l1_entries as u32,
            l1_table_offset: if self.l1_clusters == 0 {
                0
            } else {
                CLUSTER_SIZE
            },
            refcount_table_offset: self.refcount_table_start() * CLUSTER_SIZE,
            refcount_table_clusters: self.refcount_table_clusters as u32,
        }
    }

    /// The L1 table (section "Cluster mapping": bits 9-55 the L2 table's
    /// offset, bit 63 COPIED), padded to whole clusters.
    fn l1_table(&self) -> Vec<u8> {
        let mut t = vec![0u8; (self.l1_clusters * CLUSTER_SIZE) as usize];
        for (n, &i) in self.l2_present.iter().enumerate() {
            let off = (self.l2_start() + n as u64) * CLUSTER_SIZE;
            put_be64(&mut t, i, off | OFLAG_COPIED);
        }
        t
    }

    /// The refcount table (section "Host cluster management"): offsets of
    /// the refcount blocks, padded to whole clusters.
    fn refcount_table(&self) -> Vec<u8> {
        let mut t = vec![0u8; (self.refcount_table_clusters * CLUSTER_SIZE) as usize];
        for b in 0..self.refcount_blocks {
            put_be64(&mut t, b, (self.refcount_blocks_start() + b) * CLUSTER_SIZE);
        }
        t
    }

    /// Refcount block `b`: 16-bit big-endian refcounts, 1 for every host
    /// cluster the file has, 0 past its end.
    fn refcount_block(&self, b: u64) -> Vec<u8> {
        let mut blk = vec![0u8; CLUSTER_SIZE as usize];
        let first = b * CLUSTERS_PER_REFBLOCK;
        let used = self
            .total_clusters()
            .saturating_sub(first)
            .min(CLUSTERS_PER_REFBLOCK);
        for e in blk
            .chunks_exact_mut(REFCOUNT_BYTES as usize)
            .take(used as usize)
        {
            e.copy_from_slice(&1u16.to_be_bytes());
        }
        blk
    }

    /// The L2 table for L1 index `l1` (standard cluster descriptors: bits
    /// 9-55 the host offset, bit 63 COPIED); `next_data` is the host cluster
    /// of the first data cluster it maps and is advanced past its clusters.
    fn l2_table(&self, l1: u64, next_data: &mut u64) -> Vec<u8> {
        let mut t = vec![0u8; CLUSTER_SIZE as usize];
        let first = l1 * L2_ENTRIES;
        for g in first..(first + L2_ENTRIES).min(self.map.len) {
            if self.map.get(g) {
                put_be64(
                    &mut t,
                    g - first,
                    (*next_data * CLUSTER_SIZE) | OFLAG_COPIED,
                );
                *next_data += 1;
            }
        }
        t
    }
}

fn put_be64(table: &mut [u8], index: u64, v: u64) {
    let i = (index * ENTRY_BYTES) as usize;
    table[i..i + 8].copy_from_slice(&v.to_be_bytes());
}

/// Options for [`write_qcow2_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Qcow2Options {
    /// Guest byte ranges whose clusters are stored even when all zero, so
    /// they can be rewritten in place later without allocating (config
    /// slots and their index: `smelt inject`, [`Qcow2Map`]).
    pub keep_allocated: Vec<std::ops::Range<u64>>,
}

/// Converts the first `raw_len` bytes of `raw` (read from offset 0) to a
/// qcow2 image written sequentially to `out`; see the module doc.
pub fn write_qcow2<R: Read + Seek>(
    raw: &mut R,
    raw_len: u64,
    out: &mut impl Write,
) -> Result<Qcow2Info, Qcow2Error> {
    write_qcow2_with(raw, raw_len, &Qcow2Options::default(), out)
}

/// [`write_qcow2`] with options.
pub fn write_qcow2_with<R: Read + Seek>(
    raw: &mut R,
    raw_len: u64,
    opts: &Qcow2Options,
    out: &mut impl Write,
) -> Result<Qcow2Info, Qcow2Error> {
    if raw_len > MAX_VIRTUAL_SIZE {
        return Err(Qcow2Error::TooBig(raw_len));
    }
    let virtual_size = raw_len.next_multiple_of(SECTOR_SIZE);
    let mut keep = ClusterMap::new(raw_len.div_ceil(CLUSTER_SIZE));
    for r in &opts.keep_allocated {
        if r.start > r.end || r.end > raw_len {
            return Err(Qcow2Error::KeepOutside {
                start: r.start,
                end: r.end,
                len: raw_len,
            });
        }
        if r.start < r.end {
            (r.start / CLUSTER_SIZE..r.end.div_ceil(CLUSTER_SIZE)).for_each(|g| keep.set(g));
        }
    }
    let (map, first_hash) = scan(raw, raw_len, keep)?;
    let layout = Layout::new(virtual_size, map);
    let mut out = Out(BufWriter::with_capacity(
        IO_BUFFER,
        CountingWriter::new(out),
    ));
    out.put(&layout.header().encode())?;
    out.put(&layout.l1_table())?;
    out.put(&layout.refcount_table())?;
    for b in 0..layout.refcount_blocks {
        out.put(&layout.refcount_block(b))?;
    }
    let mut next_data = layout.data_start();
    for &l1 in &layout.l2_present {
        out.put(&layout.l2_table(l1, &mut next_data))?;
    }
    let second_hash = copy_data(raw, raw_len, &layout.map, &mut out)?;
    if second_hash != first_hash {
        return Err(Qcow2Error::Changed {
            what: "stored clusters differ between the two passes".into(),
        });
    }
    let file_size = out.finish()?;
    debug_assert_eq!(file_size, layout.total_clusters() * CLUSTER_SIZE);
    Ok(Qcow2Info {
        virtual_size,
        file_size,
        data_clusters: layout.data_clusters,
        l2_tables: layout.l2_present.len() as u64,
    })
}

/// The output, with write errors naming the byte offset reached.
struct Out<'a, W: Write>(BufWriter<CountingWriter<&'a mut W>>);

impl<W: Write> Out<'_, W> {
    fn offset(&self) -> u64 {
        self.0.get_ref().count() + self.0.buffer().len() as u64
    }
    fn put(&mut self, bytes: &[u8]) -> Result<(), Qcow2Error> {
        let offset = self.offset();
        self.0
            .write_all(bytes)
            .map_err(|source| Qcow2Error::Write { offset, source })
    }
    fn finish(mut self) -> Result<u64, Qcow2Error> {
        let offset = self.offset();
        self.0
            .flush()
            .map_err(|source| Qcow2Error::Write { offset, source })?;
        Ok(self.0.get_ref().count())
    }
}

/// Reads guest cluster `g` (the last one zero-padded) into `buf`.
fn read_cluster<R: Read + Seek>(
    raw: &mut R,
    raw_len: u64,
    g: u64,
    buf: &mut [u8],
) -> Result<(), Qcow2Error> {
    let offset = g * CLUSTER_SIZE;
    let n = (raw_len - offset).min(CLUSTER_SIZE) as usize;
    buf[n..].fill(0);
    let mut got = 0;
    while got < n {
        match raw.read(&mut buf[got..n]) {
            Ok(0) => {
                return Err(Qcow2Error::ShortInput {
                    expected: raw_len,
                    got: offset + got as u64,
                });
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Qcow2Error::Read {
                    offset: offset + got as u64,
                    source,
                });
            }
        }
    }
    Ok(())
}

fn seek_to<R: Seek>(raw: &mut R, offset: u64) -> Result<(), Qcow2Error> {
    raw.seek(SeekFrom::Start(offset))
        .map(drop)
        .map_err(|source| Qcow2Error::Read { offset, source })
}

/// First pass: the map of guest clusters to store (non-zero or in `keep`),
/// and a hash of them.
fn scan<R: Read + Seek>(
    raw: &mut R,
    raw_len: u64,
    keep: ClusterMap,
) -> Result<(ClusterMap, Vec<u8>), Qcow2Error> {
    let clusters = raw_len.div_ceil(CLUSTER_SIZE);
    let mut map = keep;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CLUSTER_SIZE as usize];
    seek_to(raw, 0)?;
    for g in 0..clusters {
        read_cluster(raw, raw_len, g, &mut buf)?;
        if map.get(g) || buf.iter().any(|&b| b != 0) {
            map.set(g);
            hash.update(&buf);
        }
    }
    Ok((map, hash.finalize().to_vec()))
}

/// Second pass: copies the non-zero clusters in guest order, seeking over
/// the zero ones; returns the hash of what it copied.
fn copy_data<R: Read + Seek, W: Write>(
    raw: &mut R,
    raw_len: u64,
    map: &ClusterMap,
    out: &mut Out<'_, W>,
) -> Result<Vec<u8>, Qcow2Error> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CLUSTER_SIZE as usize];
    let mut pos = None;
    for g in (0..map.len).filter(|&g| map.get(g)) {
        if pos != Some(g) {
            seek_to(raw, g * CLUSTER_SIZE)?;
        }
        read_cluster(raw, raw_len, g, &mut buf)?;
        pos = Some(g + 1);
        hash.update(&buf);
        out.put(&buf)?;
    }
    Ok(hash.finalize().to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Cursor;
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::digest::Digest;
    use crate::tree::testutil::run;

    pub(crate) const MIB: u64 = 1 << 20;

    /// Deterministic pseudo-random bytes (xorshift64*).
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            v.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// Data regions of a raw image: at the start, straddling the 512 MiB
    /// L2 boundary (when that long), and the last ten bytes.
    fn holey_regions(len: u64) -> Vec<(u64, Vec<u8>)> {
        let mut r = vec![(0, noise(100_000, 1))];
        if len > 512 * MIB + 70_000 {
            r.push((512 * MIB - 5, vec![0xA5; 70_005]));
        }
        r.push((len - 10, b"0123456789".to_vec()));
        r
    }

    fn holey(len: u64) -> Vec<u8> {
        let mut raw = vec![0u8; len as usize];
        for (off, bytes) in holey_regions(len) {
            raw[off as usize..off as usize + bytes.len()].copy_from_slice(&bytes);
        }
        raw
    }

    /// A sparse file with [`holey_regions`].
    fn holey_file(path: &Path, len: u64) {
        let mut f = std::fs::File::create(path).unwrap();
        f.set_len(len).unwrap();
        for (off, bytes) in holey_regions(len) {
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(&bytes).unwrap();
        }
    }

    /// Converts the raw file `raw_path` to `dir`/disk.qcow2 and checks it
    /// with qemu-img; returns our info and `qemu-img map`'s JSON.
    fn convert_and_check(raw_path: &Path, dir: &Path) -> (Qcow2Info, serde_json::Value) {
        let qcow = dir.join("disk.qcow2");
        let mut raw = std::fs::File::open(raw_path).unwrap();
        let len = raw.metadata().unwrap().len();
        let mut out = std::fs::File::create(&qcow).unwrap();
        let info = write_qcow2(&mut raw, len, &mut out).unwrap();
        drop(out);
        assert_eq!(std::fs::metadata(&qcow).unwrap().len(), info.file_size);
        let check = run(Command::new("qemu-img")
            .args(["check", "--output=json"])
            .arg(&qcow));
        let check: serde_json::Value = serde_json::from_str(&check).unwrap();
        assert_eq!(check["check-errors"], 0, "{check}");
        assert!(
            check.get("leaks").is_none() && check.get("corruptions").is_none(),
            "{check}"
        );
        let json = run(Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&qcow));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["format"], "qcow2");
        assert_eq!(v["virtual-size"].as_u64(), Some(info.virtual_size));
        assert_eq!(v["cluster-size"], 65536);
        assert_eq!(v["format-specific"]["data"]["compat"], "1.1");
        assert_eq!(v["format-specific"]["data"]["refcount-bits"], 16);
        let cmp = run(Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(raw_path)
            .arg(&qcow));
        assert!(cmp.contains("Images are identical"), "{cmp}");
        let map = run(Command::new("qemu-img")
            .args(["map", "--output=json"])
            .arg(&qcow));
        (info, serde_json::from_str(&map).unwrap())
    }

    fn convert_bytes(raw: &[u8], dir: &Path) -> (Qcow2Info, serde_json::Value) {
        let path = dir.join("disk.raw");
        std::fs::write(&path, raw).unwrap();
        convert_and_check(&path, dir)
    }

    /// Bytes of guest data qemu-img map reports as allocated.
    pub(crate) fn mapped_bytes(map: &serde_json::Value) -> u64 {
        let extents = map.as_array().unwrap();
        let data = extents.iter().filter(|e| e["data"] == true);
        data.map(|e| e["length"].as_u64().unwrap()).sum()
    }

    #[test]
    fn sparse_raw_with_holes_across_l2_tables() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("disk.raw");
        holey_file(&raw, 600 * MIB);
        let (info, map) = convert_and_check(&raw, tmp.path());
        // Clusters 0-1, 8191-8193 (around 512 MiB), and the last one.
        assert_eq!((info.data_clusters, info.l2_tables), (6, 2));
        assert_eq!(mapped_bytes(&map), 6 * CLUSTER_SIZE);
        // header, L1, refcount table, one refcount block, 2 L2s, 6 data.
        assert_eq!(info.file_size, 12 * CLUSTER_SIZE);
    }

    #[test]
    fn size_not_a_cluster_multiple() {
        let tmp = tempfile::tempdir().unwrap();
        let (info, _) = convert_bytes(&holey(3 * MIB + 1000), tmp.path());
        assert_eq!(info.virtual_size, 3 * MIB + 1024, "rounded up to 512");
        assert_eq!(info.data_clusters, 3);
    }

    #[test]
    fn all_zero_and_empty_raws() {
        let tmp = tempfile::tempdir().unwrap();
        let (info, map) = convert_bytes(&vec![0u8; (5 * MIB) as usize], tmp.path());
        assert_eq!((info.data_clusters, info.l2_tables), (0, 0));
        assert_eq!(mapped_bytes(&map), 0);
        assert_eq!(info.file_size, 4 * CLUSTER_SIZE);
        let (info, _) = convert_bytes(&[], tmp.path());
        assert_eq!((info.virtual_size, info.file_size), (0, 3 * CLUSTER_SIZE));
    }

    #[test]
    fn random_data() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = noise((4 * MIB + 12_345) as usize, 42);
        let (info, map) = convert_bytes(&raw, tmp.path());
        assert_eq!(info.data_clusters, 65);
        assert_eq!(mapped_bytes(&map), info.virtual_size);
    }

    #[test]
    fn refcount_layout_past_one_block() {
        // 32,768 host clusters fill one refcount block: force a second.
        let mut map = ClusterMap::new(40_000);
        (0..40_000).for_each(|g| map.set(g));
        let l = Layout::new(40_000 * CLUSTER_SIZE, map);
        assert_eq!((l.refcount_blocks, l.refcount_table_clusters), (2, 1));
        assert!(l.total_clusters() <= 2 * CLUSTERS_PER_REFBLOCK);
        assert_eq!(l.total_clusters(), 1 + 1 + 1 + 2 + 5 + 40_000);
        let second = l.refcount_block(1);
        let used = (l.total_clusters() - CLUSTERS_PER_REFBLOCK) as usize;
        assert_eq!(&second[2 * used - 2..2 * used + 2], &[0, 1, 0, 0]);
    }

    #[test]
    fn deterministic_golden() {
        let raw = holey(3 * MIB + 1000);
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_qcow2(&mut Cursor::new(&raw), raw.len() as u64, &mut a).unwrap();
        write_qcow2(&mut Cursor::new(&raw), raw.len() as u64, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            Digest::of(&a).to_string(),
            "sha256:b62828ed688cf55278d2f65b71bab3bcca2a0ecb83325e14d7766cb29a2b90ad"
        );
    }

    #[test]
    fn short_input_is_an_error() {
        let raw = vec![1u8; 100_000];
        let err = write_qcow2(&mut Cursor::new(&raw), 200_000, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(
                err,
                Qcow2Error::ShortInput {
                    expected: 200_000,
                    got: 100_000
                }
            ),
            "{err}"
        );
        let err = write_qcow2(
            &mut Cursor::new(&raw),
            MAX_VIRTUAL_SIZE + 1,
            &mut Vec::new(),
        );
        assert!(matches!(err, Err(Qcow2Error::TooBig(_))));
    }

    /// A raw image whose bytes change after the first full read.
    struct Shifty {
        data: Cursor<Vec<u8>>,
        reads: u64,
    }

    impl Read for Shifty {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.reads == 3 {
                self.data.get_mut()[70_000] ^= 0xFF;
            }
            self.data.read(buf)
        }
    }

    impl Seek for Shifty {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.data.seek(pos)
        }
    }

    #[test]
    fn changing_input_is_an_error() {
        let mut raw = Shifty {
            data: Cursor::new(vec![7u8; 2 * CLUSTER_SIZE as usize]),
            reads: 0,
        };
        let err = write_qcow2(&mut raw, 2 * CLUSTER_SIZE, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Qcow2Error::Changed { .. }), "{err}");
    }

    struct FailingWriter(u64);

    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 < buf.len() as u64 {
                return Err(io::Error::other("disk full"));
            }
            self.0 -= buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_name_the_offset() {
        let raw = noise(MIB as usize, 3);
        let mut out = FailingWriter(3 * CLUSTER_SIZE);
        let err = write_qcow2(&mut Cursor::new(&raw), MIB, &mut out).unwrap_err();
        assert!(
            err.to_string().starts_with("writing qcow2 at byte"),
            "{err}"
        );
        assert!(err.to_string().ends_with("disk full"), "{err}");
    }
}
