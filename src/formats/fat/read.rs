//! Reading a FAT12/16 volume back: the boot sector, the volume labels and
//! every regular file, with the volume checked for completeness on the way.
//!
//! Scope: what smelt needs to show a config slot and to decide, as the init
//! does, whether a slot holds a complete file system: 512-byte sectors,
//! FAT12/16 (fatgen103 §3.5 cluster counts), 8.3 names with VFAT long names
//! (§7, used when their checksum matches the short entry), directories and
//! regular files. Checked: the boot signature and BPB fields, the FAT copies
//! identical, every cluster chain inside the volume, free of loops,
//! cross-links, free or bad entries, and exactly as long as its file.
//! Non-goals: FAT32 (a config slot is at most 256 MiB, FAT16), writing,
//! repairing, timestamps and attributes beyond directory/file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::FatType;
use super::dir::{ATTR_DIRECTORY, ATTR_VOLUME_ID, checksum};
use super::geometry::{DIR_ENTRY, FAT12_MAX_CLUSTERS, FAT16_MAX_CLUSTERS, SECTOR};

/// `ATTR_LONG_NAME` (fatgen103 §7).
const ATTR_LONG_NAME: u8 = 0x0F;
/// `DIR_Name[0]` of a free entry, and of the end of the directory (§6.1).
const ENTRY_FREE: u8 = 0xE5;
const ENTRY_END: u8 = 0x00;
/// `DIR_NTRes` bits Windows uses for an all-lowercase base / extension.
const LOWER_BASE: u8 = 0x08;
const LOWER_EXT: u8 = 0x10;
/// Directory nesting read at most (a config slot holds a few levels).
const MAX_DEPTH: usize = 32;

/// Errors from [`FatVolume::parse`] and [`FatVolume::files`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FatReadError {
    #[error(
        "FAT volume is truncated: {what} at byte {offset} needs {need} bytes, volume has {len}"
    )]
    Truncated {
        what: &'static str,
        offset: u64,
        need: u64,
        len: u64,
    },
    #[error("bad FAT volume at byte {offset}: {what}")]
    Bad { offset: u64, what: String },
}

fn bad(offset: u64, what: impl Into<String>) -> FatReadError {
    FatReadError::Bad {
        offset,
        what: what.into(),
    }
}

/// Bounds-checked little-endian reads.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn slice(&self, offset: u64, len: u64, what: &'static str) -> Result<&'a [u8], FatReadError> {
        let trunc = || FatReadError::Truncated {
            what,
            offset,
            need: len,
            len: self.0.len() as u64,
        };
        let start = usize::try_from(offset).map_err(|_| trunc())?;
        let end = usize::try_from(offset.saturating_add(len)).map_err(|_| trunc())?;
        self.0.get(start..end).ok_or_else(trunc)
    }
    fn u8(&self, offset: u64, what: &'static str) -> Result<u8, FatReadError> {
        Ok(self.slice(offset, 1, what)?[0])
    }
    fn u16(&self, offset: u64, what: &'static str) -> Result<u16, FatReadError> {
        let b = self.slice(offset, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, offset: u64, what: &'static str) -> Result<u32, FatReadError> {
        let b = self.slice(offset, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A parsed FAT12/16 volume borrowing its bytes.
#[derive(Debug)]
pub struct FatVolume<'a> {
    bytes: Bytes<'a>,
    pub kind: FatType,
    /// `BS_VolID`, when the extended boot signature is present.
    pub volume_id: Option<u32>,
    /// `BS_VolLab`, when the extended boot signature is present.
    pub label: Option<[u8; 11]>,
    /// Bytes of the volume (`BPB_TotSec` × 512).
    pub size: u64,
    cluster_bytes: u64,
    clusters: u32,
    root_offset: u64,
    root_entries: u32,
    data_offset: u64,
    /// FAT entries 0..clusters+2, decoded from the first FAT.
    fat: Vec<u32>,
}

impl std::fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

/// What [`FatVolume::files`] found: regular files by path (`/`-separated,
/// relative) and the root directory's volume-label entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FatContents {
    pub root_label: Option<[u8; 11]>,
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

impl<'a> FatVolume<'a> {
    /// Parses and checks the boot sector and the FATs (fatgen103 §3.1-§3.5).
    pub fn parse(bytes: &'a [u8]) -> Result<FatVolume<'a>, FatReadError> {
        let b = Bytes(bytes);
        let Bpb {
            spc,
            reserved,
            num_fats,
            root_entries,
            total,
            fat_sectors,
        } = Bpb::parse(&b)?;
        let size = u64::from(total) * u64::from(SECTOR);
        let root_sectors = u32::from(root_entries) * DIR_ENTRY / SECTOR;
        let meta =
            u32::from(reserved) + u32::from(num_fats) * u32::from(fat_sectors) + root_sectors;
        let data_sectors = total.checked_sub(meta).ok_or_else(|| {
            bad(
                19,
                format!("{total} sectors cannot hold the {meta} of metadata"),
            )
        })?;
        let clusters = data_sectors / u32::from(spc);
        let kind = match clusters {
            0 => return Err(bad(19, "no data clusters")),
            n if n <= FAT12_MAX_CLUSTERS => FatType::Fat12,
            n if n <= FAT16_MAX_CLUSTERS => FatType::Fat16,
            n => return Err(bad(19, format!("{n} clusters: FAT32, not read"))),
        };
        let fat_bytes = u64::from(fat_sectors) * u64::from(SECTOR);
        if (u64::from(clusters) + 2) * u64::from(kind.bits()) > fat_bytes * 8 {
            return Err(bad(
                22,
                format!("a FAT of {fat_sectors} sectors cannot map {clusters} clusters"),
            ));
        }
        let fat_offset = u64::from(reserved) * u64::from(SECTOR);
        let first = fat_copies(&b, fat_offset, fat_bytes, num_fats)?;
        let fat = (0..clusters + 2).map(|n| decode(kind, first, n)).collect();
        let (volume_id, label) = if b.u8(38, "BS_BootSig")? == 0x29 {
            let mut l = [0u8; 11];
            l.copy_from_slice(b.slice(43, 11, "BS_VolLab")?);
            (Some(b.u32(39, "BS_VolID")?), Some(l))
        } else {
            (None, None)
        };
        let root_offset = fat_offset + u64::from(num_fats) * fat_bytes;
        Ok(FatVolume {
            bytes: b,
            kind,
            volume_id,
            label,
            size,
            cluster_bytes: u64::from(spc) * u64::from(SECTOR),
            clusters,
            root_offset,
            root_entries: u32::from(root_entries),
            data_offset: root_offset + u64::from(root_sectors) * u64::from(SECTOR),
            fat,
        })
    }

    /// Reads every directory and regular file, checking each cluster chain.
    pub fn files(&self) -> Result<FatContents, FatReadError> {
        let mut used = vec![false; self.fat.len()];
        let mut out = FatContents::default();
        let root = self.bytes.slice(
            self.root_offset,
            u64::from(self.root_entries * DIR_ENTRY),
            "root directory",
        )?;
        self.read_dir(
            root,
            self.root_offset,
            Path::new(""),
            0,
            &mut used,
            &mut out,
        )?;
        Ok(out)
    }

    fn cluster_offset(&self, n: u32) -> u64 {
        self.data_offset + u64::from(n - 2) * self.cluster_bytes
    }

    /// The clusters of the chain from `first`, marking them used; `at` is
    /// the byte of the directory entry naming it (for errors).
    fn chain(&self, first: u32, at: u64, used: &mut [bool]) -> Result<Vec<u32>, FatReadError> {
        let eoc = match self.kind {
            FatType::Fat12 => 0xFF8,
            _ => 0xFFF8,
        };
        let mut out = Vec::new();
        let mut n = first;
        loop {
            if n < 2 || n >= self.clusters + 2 {
                return Err(bad(
                    at,
                    format!(
                        "cluster chain reaches cluster {n}, outside 2..{}",
                        self.clusters + 2
                    ),
                ));
            }
            let i = n as usize;
            if used[i] {
                return Err(bad(
                    at,
                    format!("cluster {n} is used twice (a loop or a cross-link)"),
                ));
            }
            used[i] = true;
            out.push(n);
            match self.fat[i] {
                next if next >= eoc => return Ok(out),
                0 => {
                    return Err(bad(
                        at,
                        format!("cluster {n} is marked free inside a chain"),
                    ));
                }
                next if next == eoc - 1 => {
                    return Err(bad(at, format!("cluster {n} is marked bad")));
                }
                next => n = next,
            }
        }
    }

    fn read_chain(&self, clusters: &[u32], at: u64) -> Result<Vec<u8>, FatReadError> {
        let mut data = Vec::with_capacity(clusters.len() * self.cluster_bytes as usize);
        for &c in clusters {
            let off = self.cluster_offset(c);
            if off + self.cluster_bytes > self.size {
                return Err(bad(at, format!("cluster {c} ends past the volume")));
            }
            data.extend_from_slice(self.bytes.slice(off, self.cluster_bytes, "cluster")?);
        }
        Ok(data)
    }

    fn read_dir(
        &self,
        entries: &[u8],
        base: u64,
        path: &Path,
        depth: usize,
        used: &mut [bool],
        out: &mut FatContents,
    ) -> Result<(), FatReadError> {
        if depth > MAX_DEPTH {
            return Err(bad(
                base,
                format!("directories nested deeper than {MAX_DEPTH}"),
            ));
        }
        let mut long = LongName::default();
        for (i, e) in entries.chunks_exact(DIR_ENTRY as usize).enumerate() {
            let at = base + (i as u64) * u64::from(DIR_ENTRY);
            match (e[0], e[11]) {
                (ENTRY_END, _) => break,
                (ENTRY_FREE, _) => long = LongName::default(),
                (_, ATTR_LONG_NAME) => long.push(e),
                (_, attr) if attr & ATTR_VOLUME_ID != 0 => {
                    if depth == 0 && out.root_label.is_none() {
                        let mut l = [0u8; 11];
                        l.copy_from_slice(&e[..11]);
                        out.root_label = Some(l);
                    }
                    long = LongName::default();
                }
                (b'.', _) => long = LongName::default(),
                (_, attr) => {
                    let mut short = [0u8; 11];
                    short.copy_from_slice(&e[..11]);
                    let name = std::mem::take(&mut long)
                        .name(&short)
                        .unwrap_or_else(|| short_name(&short, e[12]));
                    if name.contains('/') || name.contains('\0') {
                        return Err(bad(at, format!("entry name {name:?}")));
                    }
                    let child = path.join(&name);
                    let first = u32::from(u16::from_le_bytes([e[26], e[27]]))
                        | (u32::from(u16::from_le_bytes([e[20], e[21]])) << 16);
                    let size = u32::from_le_bytes([e[28], e[29], e[30], e[31]]);
                    if attr & ATTR_DIRECTORY != 0 {
                        let chain = self.chain(first, at, used)?;
                        let data = self.read_chain(&chain, at)?;
                        let dir_base = self.cluster_offset(chain[0]);
                        self.read_dir(&data, dir_base, &child, depth + 1, used, out)?;
                    } else {
                        let data = self.file(first, size, at, used)?;
                        out.files.insert(child, data);
                    }
                }
            }
        }
        Ok(())
    }

    fn file(
        &self,
        first: u32,
        size: u32,
        at: u64,
        used: &mut [bool],
    ) -> Result<Vec<u8>, FatReadError> {
        if size == 0 {
            if first != 0 {
                return Err(bad(at, format!("an empty file owns cluster {first}")));
            }
            return Ok(Vec::new());
        }
        let chain = self.chain(first, at, used)?;
        let need = u64::from(size).div_ceil(self.cluster_bytes);
        if chain.len() as u64 != need {
            return Err(bad(
                at,
                format!(
                    "a file of {size} bytes has {} clusters, needs {need}",
                    chain.len()
                ),
            ));
        }
        let mut data = self.read_chain(&chain, at)?;
        data.truncate(size as usize);
        Ok(data)
    }
}

/// The BIOS Parameter Block fields the reader uses (fatgen103 §3.1).
struct Bpb {
    spc: u8,
    reserved: u16,
    num_fats: u8,
    root_entries: u16,
    total: u32,
    fat_sectors: u16,
}

impl Bpb {
    fn parse(b: &Bytes<'_>) -> Result<Bpb, FatReadError> {
        let sig = b.slice(510, 2, "boot signature")?;
        if sig != [0x55, 0xAA] {
            return Err(bad(510, format!("boot signature {sig:02x?}, not 55 aa")));
        }
        let bps = b.u16(11, "BPB_BytsPerSec")?;
        if u32::from(bps) != SECTOR {
            return Err(bad(
                11,
                format!("{bps} bytes per sector (only 512 is read)"),
            ));
        }
        let spc = b.u8(13, "BPB_SecPerClus")?;
        if !spc.is_power_of_two() {
            return Err(bad(13, format!("{spc} sectors per cluster")));
        }
        let reserved = b.u16(14, "BPB_RsvdSecCnt")?;
        if reserved == 0 {
            return Err(bad(14, "no reserved sectors"));
        }
        let num_fats = b.u8(16, "BPB_NumFATs")?;
        if !(1..=2).contains(&num_fats) {
            return Err(bad(16, format!("{num_fats} FATs")));
        }
        let root_entries = b.u16(17, "BPB_RootEntCnt")?;
        if root_entries == 0 || !(u32::from(root_entries) * DIR_ENTRY).is_multiple_of(SECTOR) {
            return Err(bad(
                17,
                format!("{root_entries} root entries (FAT32 is not read)"),
            ));
        }
        let total = match b.u16(19, "BPB_TotSec16")? {
            0 => b.u32(32, "BPB_TotSec32")?,
            n => u32::from(n),
        };
        if u64::from(total) * u64::from(SECTOR) > b.0.len() as u64 {
            return Err(bad(
                19,
                format!("{total} sectors, more than the {} bytes given", b.0.len()),
            ));
        }
        let fat_sectors = b.u16(22, "BPB_FATSz16")?;
        if fat_sectors == 0 {
            return Err(bad(22, "BPB_FATSz16 is 0 (FAT32 is not read)"));
        }
        Ok(Bpb {
            spc,
            reserved,
            num_fats,
            root_entries,
            total,
            fat_sectors,
        })
    }
}

/// The first FAT, after checking every copy is identical to it.
fn fat_copies<'a>(
    b: &Bytes<'a>,
    fat_offset: u64,
    fat_bytes: u64,
    num_fats: u8,
) -> Result<&'a [u8], FatReadError> {
    let first = b.slice(fat_offset, fat_bytes, "FAT")?;
    for n in 1..u64::from(num_fats) {
        let copy = b.slice(fat_offset + n * fat_bytes, fat_bytes, "FAT copy")?;
        if let Some(i) = first.iter().zip(copy).position(|(x, y)| x != y) {
            let at = fat_offset + n * fat_bytes + i as u64;
            return Err(bad(at, format!("FAT copy {n} differs from the first FAT")));
        }
    }
    Ok(first)
}

/// FAT entry `n` from the FAT's bytes (fatgen103 §4).
fn decode(kind: FatType, fat: &[u8], n: u32) -> u32 {
    let n = n as usize;
    match kind {
        FatType::Fat12 => {
            let o = n + n / 2;
            let v = u32::from(u16::from_le_bytes([fat[o], fat[o + 1]]));
            if n.is_multiple_of(2) {
                v & 0xFFF
            } else {
                v >> 4
            }
        }
        _ => u32::from(u16::from_le_bytes([fat[2 * n], fat[2 * n + 1]])),
    }
}

/// The 8.3 name as `BASE.EXT`, lower-cased as `DIR_NTRes` says.
fn short_name(short: &[u8; 11], ntres: u8) -> String {
    let part = |b: &[u8], lower: bool| {
        let s: String = b.iter().map(|&c| c as char).collect::<String>();
        let s = s.trim_end().to_string();
        if lower { s.to_ascii_lowercase() } else { s }
    };
    let mut first = short[0];
    if first == 0x05 {
        first = ENTRY_FREE; // §6.1: 0x05 stands for a leading 0xE5
    }
    let mut base_bytes = *short;
    base_bytes[0] = first;
    let base = part(&base_bytes[..8], ntres & LOWER_BASE != 0);
    let ext = part(&short[8..], ntres & LOWER_EXT != 0);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// Long-name entries seen before a short entry (fatgen103 §7).
#[derive(Default)]
struct LongName {
    parts: BTreeMap<u8, [u16; 13]>,
    sum: Option<u8>,
    consistent: bool,
}

impl LongName {
    fn push(&mut self, e: &[u8]) {
        if self.parts.is_empty() {
            self.consistent = true;
        }
        let ord = e[0] & 0x3F;
        let mut units = [0u16; 13];
        let offs = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
        for (u, o) in units.iter_mut().zip(offs) {
            *u = u16::from_le_bytes([e[o], e[o + 1]]);
        }
        if self.sum.is_some_and(|s| s != e[13]) || self.parts.insert(ord, units).is_some() {
            self.consistent = false;
        }
        self.sum = Some(e[13]);
    }

    /// The long name, if the parts are complete and match `short`.
    fn name(self, short: &[u8; 11]) -> Option<String> {
        if !self.consistent || self.sum != Some(checksum(short)) {
            return None;
        }
        let n = self.parts.len() as u8;
        if self.parts.keys().copied().ne(1..=n) {
            return None;
        }
        let units: Vec<u16> = self
            .parts
            .values()
            .flatten()
            .copied()
            .take_while(|&u| u != 0)
            .collect();
        String::from_utf16(&units).ok()
    }
}
