//! Just enough FAT to read a NoCloud `CIDATA` volume without the kernel's
//! vfat driver, a loop device or a mount: the boot sector, the volume
//! label, directories (with VFAT long names) and files, read through
//! [`Sys::read_at`] from a byte range of a block device (the whole
//! partition, or a slot inside a disk or CD that the slot index names).
//!
//! Microsoft's FAT specification (fatgen103, "FAT: General Overview of
//! On-Disk Format"): the BIOS parameter block is at the start of sector 0
//! and the sector ends with `0x55 0xAA` at byte 510; FAT12, FAT16 and
//! FAT32 are told apart by the count of data clusters alone (< 4085,
//! < 65525, more); the volume label is at byte 43 (FAT12/16) or 71 (FAT32)
//! of the boot sector and again as a root-directory entry with attribute
//! 0x08, which is the one blkid reports and so the one that wins here.
//! Long names are runs of attribute-0x0F entries before their short entry,
//! 13 UCS-2 units each, last piece first, tied to the short name by a
//! checksum.
//!
//! A boot sector without the `0x55 0xAA` signature is not a file system:
//! `smelt inject` clears it first and writes it last (docs/slots.md), so a
//! slot an interrupted inject left behind is never read half-written.
//! Every size is checked against the volume before it is used; a cluster
//! chain longer than the volume's cluster count is a loop and an error.
//! Non-goals: writing, deleted-file recovery, FAT32 FSInfo, exFAT.

use std::collections::BTreeMap;

use crate::sys::Sys;

/// The largest file read (a NoCloud slot is at most 256 MiB, its
/// user-data far less).
pub const MAX_FILE: u64 = 16 << 20;
/// The most entries read from one directory.
const MAX_ENTRIES: usize = 4096;
/// Directory depth followed by [`Fat::read_all`].
const MAX_DEPTH: usize = 8;
const ATTR_LFN: u8 = 0x0F;
const ATTR_VOLUME: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;

/// The three FAT widths, by data-cluster count (fatgen103 p. 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

/// A FAT volume at `base..base+len` of `dev`.
#[derive(Debug, Clone)]
pub struct Fat {
    dev: String,
    base: u64,
    len: u64,
    pub kind: Kind,
    /// Bytes per cluster.
    cluster: u64,
    /// Byte offset (from `base`) of the first FAT.
    fat_start: u64,
    /// FAT12/16: the fixed root directory's offset and size.
    root_start: u64,
    root_len: u64,
    /// FAT32: the root directory's first cluster.
    root_cluster: u32,
    /// Byte offset of cluster 2.
    data_start: u64,
    clusters: u32,
    /// The boot sector's label field (11 bytes, spaces trimmed).
    bpb_label: String,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub dir: bool,
    pub cluster: u32,
    pub size: u32,
}

fn u16_at(b: &[u8], o: usize) -> u64 {
    u16::from_le_bytes([b[o], b[o + 1]]) as u64
}

fn u32_at(b: &[u8], o: usize) -> u64 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as u64
}

fn trim_label(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

impl Fat {
    /// Read and check the boot sector of the volume at `base` (`len` bytes)
    /// on `dev`. The error says what is wrong and at which byte.
    pub fn open(sys: &dyn Sys, dev: &str, base: u64, len: u64) -> Result<Fat, String> {
        let b = sys
            .read_at(dev, base, 512)
            .map_err(|e| format!("{dev}: reading byte {base}: {e}"))?;
        if b.len() < 512 {
            return Err(format!("{dev}: short boot sector at byte {base}"));
        }
        if b[510..512] != [0x55, 0xAA] {
            return Err(format!(
                "{dev}: no FAT boot sector signature at byte {}",
                base + 510
            ));
        }
        let sector = u16_at(&b, 11);
        let per_cluster = b[13] as u64;
        let reserved = u16_at(&b, 14);
        let fats = b[16] as u64;
        let root_entries = u16_at(&b, 17);
        let total = match u16_at(&b, 19) {
            0 => u32_at(&b, 32),
            n => n,
        };
        let fat_size = match u16_at(&b, 22) {
            0 => u32_at(&b, 36),
            n => n,
        };
        if !matches!(sector, 512 | 1024 | 2048 | 4096)
            || !per_cluster.is_power_of_two()
            || per_cluster > 128
            || reserved == 0
            || fats == 0
            || fat_size == 0
        {
            return Err(format!(
                "{dev}: not a FAT BIOS parameter block at byte {base}"
            ));
        }
        let root_len = (root_entries * 32).div_ceil(sector) * sector;
        let fat_start = reserved * sector;
        let root_start = fat_start + fats * fat_size * sector;
        let data_start = root_start + root_len;
        let bytes = total * sector;
        if bytes > len || data_start >= bytes {
            return Err(format!(
                "{dev}: FAT at byte {base} claims {bytes} bytes, the volume has {len}"
            ));
        }
        let clusters = (bytes - data_start) / (per_cluster * sector);
        let kind = match clusters {
            0..4085 => Kind::Fat12,
            4085..65525 => Kind::Fat16,
            _ => Kind::Fat32,
        };
        let label_at = if kind == Kind::Fat32 { 71 } else { 43 };
        Ok(Fat {
            dev: dev.to_string(),
            base,
            len: bytes,
            kind,
            cluster: per_cluster * sector,
            fat_start,
            root_start,
            root_len,
            root_cluster: u32_at(&b, 44) as u32,
            data_start,
            clusters: clusters as u32,
            bpb_label: trim_label(&b[label_at..label_at + 11]),
        })
    }

    fn read(&self, sys: &dyn Sys, off: u64, len: u64) -> Result<Vec<u8>, String> {
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(format!(
                "{}: read of {len} bytes at {off} leaves the FAT volume at byte {} ({} bytes)",
                self.dev, self.base, self.len
            ));
        }
        let at = self.base + off;
        let b = sys
            .read_at(&self.dev, at, len as usize)
            .map_err(|e| format!("{}: reading byte {at}: {e}", self.dev))?;
        if (b.len() as u64) < len {
            return Err(format!("{}: short read at byte {at}", self.dev));
        }
        Ok(b)
    }

    /// The FAT entry of `cluster`.
    fn next(&self, sys: &dyn Sys, cluster: u32) -> Result<u32, String> {
        let n = cluster as u64;
        Ok(match self.kind {
            Kind::Fat12 => {
                let b = self.read(sys, self.fat_start + n + n / 2, 2)?;
                let v = u16_at(&b, 0) as u32;
                if n % 2 == 1 { v >> 4 } else { v & 0xFFF }
            }
            Kind::Fat16 => u16_at(&self.read(sys, self.fat_start + n * 2, 2)?, 0) as u32,
            Kind::Fat32 => {
                u32_at(&self.read(sys, self.fat_start + n * 4, 4)?, 0) as u32 & 0x0FFF_FFFF
            }
        })
    }

    fn end_of_chain(&self, v: u32) -> bool {
        match self.kind {
            Kind::Fat12 => v >= 0xFF8,
            Kind::Fat16 => v >= 0xFFF8,
            Kind::Fat32 => v >= 0x0FFF_FFF8,
        }
    }

    /// The bytes of the chain from `first`, at most `limit`.
    fn chain(&self, sys: &dyn Sys, first: u32, limit: u64) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut c = first;
        let mut seen = std::collections::BTreeSet::new();
        while (out.len() as u64) < limit {
            if c < 2 || c >= self.clusters + 2 {
                return Err(format!("{}: cluster {c} is outside the volume", self.dev));
            }
            if !seen.insert(c) {
                return Err(format!(
                    "{}: cluster chain from {first} loops at {c}",
                    self.dev
                ));
            }
            let off = self.data_start + (c as u64 - 2) * self.cluster;
            let want = self.cluster.min(limit - out.len() as u64);
            out.extend(self.read(sys, off, want)?);
            let n = self.next(sys, c)?;
            if self.end_of_chain(n) {
                break;
            }
            c = n;
        }
        Ok(out)
    }

    fn dir_bytes(&self, sys: &dyn Sys, cluster: Option<u32>) -> Result<Vec<u8>, String> {
        let limit = (MAX_ENTRIES * 32) as u64;
        match (cluster, self.kind) {
            (Some(c), _) => self.chain(sys, c, limit),
            (None, Kind::Fat32) => self.chain(sys, self.root_cluster, limit),
            (None, _) => self.read(sys, self.root_start, self.root_len.min(limit)),
        }
    }

    /// The volume label: the root directory's label entry, else the boot
    /// sector's (blkid's order).
    pub fn label(&self, sys: &dyn Sys) -> Result<String, String> {
        let raw = self.dir_bytes(sys, None)?;
        for e in raw.chunks_exact(32) {
            match e[0] {
                0 => break,
                0xE5 => continue,
                _ if e[11] & ATTR_LFN == ATTR_LFN => continue,
                _ if e[11] & ATTR_VOLUME != 0 => return Ok(trim_label(&e[..11])),
                _ => {}
            }
        }
        Ok(self.bpb_label.clone())
    }

    /// The entries of a directory (`None`: the root), without `.`, `..`,
    /// deleted entries and the volume label.
    pub fn list(&self, sys: &dyn Sys, cluster: Option<u32>) -> Result<Vec<Entry>, String> {
        let raw = self.dir_bytes(sys, cluster)?;
        let mut out = Vec::new();
        let mut long: Vec<(u8, Vec<u16>)> = Vec::new();
        for e in raw.chunks_exact(32) {
            match e[0] {
                0 => break,
                0xE5 => {
                    long.clear();
                    continue;
                }
                _ => {}
            }
            if e[11] & ATTR_LFN == ATTR_LFN {
                let units = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]
                    .iter()
                    .map(|&o| u16::from_le_bytes([e[o], e[o + 1]]))
                    .collect();
                long.push((e[13], units));
                continue;
            }
            let pieces = std::mem::take(&mut long);
            if e[11] & ATTR_VOLUME != 0 || e[0] == b'.' {
                continue;
            }
            let name = long_name(&pieces, &e[..11]).unwrap_or_else(|| short_name(&e[..11]));
            let hi = if self.kind == Kind::Fat32 {
                u16_at(e, 20)
            } else {
                0
            };
            out.push(Entry {
                name,
                dir: e[11] & ATTR_DIR != 0,
                cluster: ((hi << 16) | u16_at(e, 26)) as u32,
                size: u32_at(e, 28) as u32,
            });
        }
        Ok(out)
    }

    /// A file's bytes.
    pub fn read_file(&self, sys: &dyn Sys, e: &Entry) -> Result<Vec<u8>, String> {
        if e.size as u64 > MAX_FILE {
            return Err(format!(
                "{}: {} is {} bytes, more than {MAX_FILE}",
                self.dev, e.name, e.size
            ));
        }
        if e.size == 0 {
            return Ok(Vec::new());
        }
        let b = self.chain(sys, e.cluster, e.size as u64)?;
        if b.len() != e.size as usize {
            return Err(format!(
                "{}: {} ends after {} of {} bytes",
                self.dev,
                e.name,
                b.len(),
                e.size
            ));
        }
        Ok(b)
    }

    /// Every file, by `/`-separated path from the root.
    pub fn read_all(&self, sys: &dyn Sys) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let mut out = BTreeMap::new();
        let mut todo = vec![(String::new(), None, 0usize)];
        while let Some((prefix, cluster, depth)) = todo.pop() {
            for e in self.list(sys, cluster)? {
                let path = format!("{prefix}{}", e.name);
                if e.dir {
                    if depth < MAX_DEPTH && e.cluster >= 2 {
                        todo.push((format!("{path}/"), Some(e.cluster), depth + 1));
                    }
                } else {
                    let data = self.read_file(sys, &e)?;
                    out.insert(path, data);
                }
            }
        }
        Ok(out)
    }
}

/// The 8.3 name as `NAME.EXT` (lower case when the entry says so: bits 3
/// and 4 of byte 12, as Windows NT and Linux write them).
fn short_name(raw: &[u8]) -> String {
    let case = raw.get(12).copied().unwrap_or(0);
    let mut base = trim_label(&raw[..8]);
    let mut ext = trim_label(&raw[8..11]);
    if case & 0x08 != 0 {
        base = base.to_ascii_lowercase();
    }
    if case & 0x10 != 0 {
        ext = ext.to_ascii_lowercase();
    }
    if base.starts_with('\u{5}') {
        base.replace_range(..1, "\u{e5}");
    }
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// The long name the pieces spell, if they are complete and their checksum
/// matches the short entry (fatgen103 p. 28).
fn long_name(pieces: &[(u8, Vec<u16>)], short: &[u8]) -> Option<String> {
    if pieces.is_empty() {
        return None;
    }
    let sum = short
        .iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b));
    let mut units = Vec::new();
    for (checksum, piece) in pieces.iter().rev() {
        if *checksum != sum {
            return None;
        }
        units.extend_from_slice(piece);
    }
    let end = units
        .iter()
        .position(|&u| u == 0 || u == 0xFFFF)
        .unwrap_or(units.len());
    String::from_utf16(&units[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;
    use std::process::Command;

    /// A FAT image made by the independent dosfstools and mtools.
    fn mkfs(size_k: u32, extra: &[&str], files: &[(&str, &[u8])]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fat.img");
        let ok = Command::new("mkfs.fat")
            .args(["-C", "-n", "CIDATA", "-i", "12345678"])
            .args(extra)
            .arg(&img)
            .arg(size_k.to_string())
            .output()
            .expect("mkfs.fat (dosfstools) is installed by scripts/deps.sh");
        assert!(ok.status.success(), "{ok:?}");
        for (path, data) in files {
            let src = dir.path().join("src");
            std::fs::write(&src, data).unwrap();
            if let Some((d, _)) = path.rsplit_once('/') {
                let _ = Command::new("mmd")
                    .arg("-i")
                    .arg(&img)
                    .arg(format!("::{d}"))
                    .output();
            }
            let ok = Command::new("mcopy")
                .arg("-i")
                .arg(&img)
                .arg(&src)
                .arg(format!("::{path}"))
                .output()
                .unwrap();
            assert!(ok.status.success(), "{ok:?}");
        }
        std::fs::read(&img).unwrap()
    }

    fn fake(dev: &str, bytes: Vec<u8>) -> FakeSys {
        let sys = FakeSys::new();
        sys.files.borrow_mut().insert(dev.to_string(), bytes);
        sys
    }

    #[test]
    fn reads_what_mtools_wrote_on_fat12_16_and_32() {
        let big = vec![b'x'; 70_000];
        let files: &[(&str, &[u8])] = &[
            ("meta-data", b"instance-id: i-1\n"),
            ("user-data", b"#cloud-config\nhostname: a\n"),
            ("network-config", b"version: 2\n"),
            ("EXTRA/some-long-file-name.txt", &big),
        ];
        for (size, extra, kind) in [
            (2048, &[][..], Kind::Fat12),
            (16384, &["-F", "16"][..], Kind::Fat16),
            (40000, &["-F", "32"][..], Kind::Fat32),
        ] {
            let img = mkfs(size, extra, files);
            let len = img.len() as u64;
            let sys = fake("/dev/vdb", img);
            let fat = Fat::open(&sys, "/dev/vdb", 0, len).unwrap();
            assert_eq!(fat.kind, kind);
            assert_eq!(fat.label(&sys).unwrap(), "CIDATA");
            let all = fat.read_all(&sys).unwrap();
            assert_eq!(all.len(), 4, "{:?}", all.keys());
            assert_eq!(all["meta-data"], b"instance-id: i-1\n");
            assert_eq!(all["user-data"], b"#cloud-config\nhostname: a\n");
            assert_eq!(all["network-config"], b"version: 2\n");
            assert_eq!(all["EXTRA/some-long-file-name.txt"], big);
        }
    }

    #[test]
    fn a_volume_inside_a_disk_is_read_at_its_offset() {
        let img = mkfs(2048, &[], &[("user-data", b"#cloud-config\n")]);
        let len = img.len() as u64;
        let mut disk = vec![0u8; 1 << 20];
        disk.extend(img);
        let sys = fake("/dev/sr0", disk);
        let fat = Fat::open(&sys, "/dev/sr0", 1 << 20, len).unwrap();
        assert_eq!(fat.read_all(&sys).unwrap()["user-data"], b"#cloud-config\n");
    }

    #[test]
    fn a_cleared_boot_sector_is_no_file_system() {
        let mut img = mkfs(2048, &[], &[("user-data", b"#cloud-config\n")]);
        img[..512].fill(0);
        let len = img.len() as u64;
        let sys = fake("/dev/vdb", img);
        let e = Fat::open(&sys, "/dev/vdb", 4096, len).unwrap_err();
        assert_eq!(e, "/dev/vdb: no FAT boot sector signature at byte 4606");
    }

    #[test]
    fn byte_flips_give_errors_not_panics() {
        let img = mkfs(2048, &[], &[("user-data", b"#cloud-config\nhostname: x\n")]);
        let len = img.len() as u64;
        // Every byte of the boot sector, the FATs and the root directory,
        // set to a few values: open/read_all may fail, never panic.
        for i in (0..16384).step_by(3) {
            for v in [0x00, 0xFF, 0x80] {
                let mut b = img.clone();
                b[i] = v;
                let sys = fake("/dev/vdb", b);
                if let Ok(fat) = Fat::open(&sys, "/dev/vdb", 0, len) {
                    let _ = fat.label(&sys);
                    let _ = fat.read_all(&sys);
                }
            }
        }
    }

    #[test]
    fn a_looping_chain_is_an_error() {
        let mut img = mkfs(2048, &[], &[("user-data", &[b'y'; 5000])]);
        let len = img.len() as u64;
        let sys = fake("/dev/vdb", img.clone());
        let fat = Fat::open(&sys, "/dev/vdb", 0, len).unwrap();
        let e = fat.list(&sys, None).unwrap();
        let c = e.iter().find(|e| e.name == "user-data").unwrap().cluster as usize;
        // FAT12: point the file's first cluster at itself.
        let off = fat.fat_start as usize + c + c / 2;
        let v = u16::from_le_bytes([img[off], img[off + 1]]);
        let v = if c % 2 == 1 {
            (v & 0x000F) | ((c as u16) << 4)
        } else {
            (v & 0xF000) | c as u16
        };
        img[off..off + 2].copy_from_slice(&v.to_le_bytes());
        let sys = fake("/dev/vdb", img);
        let err = fat.read_all(&sys).unwrap_err();
        assert!(err.contains("loops at"), "{err}");
    }
}
