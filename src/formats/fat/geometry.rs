//! Volume geometry: the FAT type, the cluster size and the sizes of the four
//! regions (reserved, FATs, FAT12/16 root directory, data), after fatgen103
//! ("Microsoft Extensible Firmware Initiative FAT32 File System
//! Specification", version 1.03) §3.5 and §4.

use super::FatType;

/// Bytes per sector. fatgen103 allows 512..4096; every tool and firmware
/// handles 512, so it is the only size written.
pub const SECTOR: u32 = 512;
/// Bytes per directory entry (fatgen103 §6).
pub const DIR_ENTRY: u32 = 32;
/// The number of FATs: two, as fatgen103 §3.1 recommends for compatibility.
pub const NUM_FATS: u32 = 2;
/// Largest cluster used: 32 KiB (64 sectors). 64 KiB clusters exist but
/// fatgen103 §3.1 warns that many systems reject them.
pub const MAX_SECTORS_PER_CLUSTER: u32 = 64;
/// Reserved sectors: 1 for FAT12/16 (the boot sector, fatgen103 §3.1
/// `BPB_RsvdSecCnt`), 32 for FAT32 (boot, FSInfo at 1, backup boot at 6).
const RESERVED_FAT1X: u32 = 1;
pub const RESERVED_FAT32: u32 = 32;
/// Root directory entries of a FAT12/16 volume unless more are needed: 512,
/// the value fatgen103 §3.1 recommends for FAT16 (`BPB_RootEntCnt`).
pub const DEFAULT_ROOT_ENTRIES: u32 = 512;

/// Cluster-count limits (fatgen103 §3.5: "the FAT type is determined solely
/// by the count of clusters"): fewer than 4085 is FAT12, fewer than 65525 is
/// FAT16, anything else is FAT32. FAT32 cluster numbers are 28 bits and
/// 0x0FFFFFF7 upward are reserved (§4).
pub const FAT12_MAX_CLUSTERS: u32 = 4084;
pub const FAT16_MAX_CLUSTERS: u32 = 65524;
pub const FAT32_MAX_CLUSTERS: u32 = 0x0FFF_FFF5 - 2;

/// Volumes below this many sectors are FAT12, as fatgen103's `DskTableFAT16`
/// leaves them (its first row, 8400 sectors / 4.1 MB, "trips FAT12").
const FAT12_BELOW: u32 = 8400;
/// Volumes of this many sectors (512 MiB) or more are FAT32: the point from
/// which fatgen103 §3.5 recommends FAT32 (`DskTableFAT32` starts there).
const FAT32_FROM: u32 = 1_048_576;

impl FatType {
    /// Bits per FAT entry.
    pub fn bits(self) -> u32 {
        match self {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        }
    }

    fn cluster_range(self) -> (u32, u32) {
        match self {
            FatType::Fat12 => (1, FAT12_MAX_CLUSTERS),
            FatType::Fat16 => (FAT12_MAX_CLUSTERS + 1, FAT16_MAX_CLUSTERS),
            FatType::Fat32 => (FAT16_MAX_CLUSTERS + 1, FAT32_MAX_CLUSTERS),
        }
    }
}

/// A count or index of 512-byte sectors inside the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sector(pub u32);

impl Sector {
    pub fn bytes(self) -> u64 {
        u64::from(self.0) * u64::from(SECTOR)
    }
}

/// The sizes of a volume's regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub kind: FatType,
    pub total_sectors: u32,
    pub sectors_per_cluster: u32,
    pub reserved_sectors: u32,
    /// Sectors of ONE FAT (`BPB_FATSz16` / `BPB_FATSz32`).
    pub fat_sectors: u32,
    /// FAT12/16 root directory entries (`BPB_RootEntCnt`); 0 for FAT32.
    pub root_entries: u32,
    /// Data clusters, numbered 2..clusters+2.
    pub clusters: u32,
}

impl Geometry {
    /// Sectors of the FAT12/16 root directory region (fatgen103 §3.5
    /// `RootDirSectors`).
    pub fn root_sectors(&self) -> u32 {
        (self.root_entries * DIR_ENTRY).div_ceil(SECTOR)
    }

    /// The first sector of the data region (cluster 2).
    pub fn data_start(&self) -> Sector {
        Sector(self.reserved_sectors + NUM_FATS * self.fat_sectors + self.root_sectors())
    }

    pub fn cluster_bytes(&self) -> u32 {
        self.sectors_per_cluster * SECTOR
    }

    /// Byte offset of cluster `n` (n >= 2) in the volume.
    pub fn cluster_offset(&self, n: u32) -> u64 {
        self.data_start().bytes() + u64::from(n - 2) * u64::from(self.cluster_bytes())
    }

    /// Lays out `total_sectors` as `kind` with `spc` sectors per cluster and
    /// at least `root_entries` root entries; `None` when the cluster count
    /// falls outside the type's range. The FAT size is the fixed point of
    /// "enough entries for the clusters that remain" (it only grows, while the
    /// cluster count only shrinks, so the loop ends).
    pub fn plan(kind: FatType, total_sectors: u32, spc: u32, root_entries: u32) -> Option<Self> {
        let (reserved_sectors, root_entries) = match kind {
            FatType::Fat32 => (RESERVED_FAT32, 0),
            _ => (
                RESERVED_FAT1X,
                root_entries.max(DEFAULT_ROOT_ENTRIES).next_multiple_of(16),
            ),
        };
        let root_sectors = (root_entries * DIR_ENTRY).div_ceil(SECTOR);
        let mut fat_sectors = 1u32;
        let clusters = loop {
            let meta = reserved_sectors + NUM_FATS * fat_sectors + root_sectors;
            let data = total_sectors.checked_sub(meta)?;
            let clusters = data / spc;
            let bytes = (u64::from(clusters) + 2) * u64::from(kind.bits()) / 8 + 1;
            let need = u32::try_from(bytes.div_ceil(u64::from(SECTOR))).ok()?;
            if need <= fat_sectors {
                break clusters;
            }
            fat_sectors = need;
        };
        let (lo, hi) = kind.cluster_range();
        (lo..=hi).contains(&clusters).then_some(Geometry {
            kind,
            total_sectors,
            sectors_per_cluster: spc,
            reserved_sectors,
            fat_sectors,
            root_entries,
            clusters,
        })
    }

    /// The geometry for `total_sectors`: the given type or the one fatgen103
    /// recommends for the size, with the smallest cluster that gives a valid
    /// cluster count (FAT32 starts from `DskTableFAT32`'s cluster size).
    pub fn choose(kind: Option<FatType>, total_sectors: u32, root_entries: u32) -> Option<Self> {
        let kinds: &[FatType] = match kind {
            Some(k) => &[k][..],
            None if total_sectors < FAT12_BELOW => &[FatType::Fat12, FatType::Fat16][..],
            None if total_sectors < FAT32_FROM => &[FatType::Fat16, FatType::Fat12][..],
            None => &[FatType::Fat32, FatType::Fat16][..],
        };
        kinds.iter().find_map(|&k| {
            let first = match k {
                FatType::Fat32 => fat32_cluster_sectors(total_sectors),
                _ => 1,
            };
            std::iter::successors(Some(first), |s| Some(s * 2))
                .take_while(|&s| s <= MAX_SECTORS_PER_CLUSTER)
                .find_map(|s| Geometry::plan(k, total_sectors, s, root_entries))
        })
    }
}

/// Sectors per cluster from fatgen103's `DskTableFAT32`: 512 B up to 260 MB,
/// 4 KiB up to 8 GB, 8 KiB to 16 GB, 16 KiB to 32 GB, 32 KiB beyond.
fn fat32_cluster_sectors(total_sectors: u32) -> u32 {
    match total_sectors {
        0..=532_480 => 1,
        532_481..=16_777_216 => 8,
        16_777_217..=33_554_432 => 16,
        33_554_433..=67_108_864 => 32,
        _ => 64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_cluster_counts() {
        // 2 MiB: FAT12 by size, 1 sector per cluster.
        let g = Geometry::choose(None, 4096, 0).unwrap();
        assert_eq!((g.kind, g.sectors_per_cluster), (FatType::Fat12, 1));
        assert!(g.clusters <= FAT12_MAX_CLUSTERS);
        // 64 MiB: FAT16 with 2 KiB clusters (1 KiB would give > 65524).
        let g = Geometry::choose(None, 131_072, 0).unwrap();
        assert_eq!((g.kind, g.sectors_per_cluster), (FatType::Fat16, 2));
        // 1 GiB: FAT32, 4 KiB clusters per DskTableFAT32.
        let g = Geometry::choose(None, 2_097_152, 0).unwrap();
        assert_eq!((g.kind, g.sectors_per_cluster), (FatType::Fat32, 8));
        assert_eq!(g.reserved_sectors, 32);
        // FAT32 needs 65525 clusters: 16 MiB cannot be FAT32, FAT16 cannot be 1 MiB.
        assert!(Geometry::choose(Some(FatType::Fat32), 32_768, 0).is_none());
        assert!(Geometry::choose(Some(FatType::Fat16), 2048, 0).is_none());
    }

    #[test]
    fn fat_holds_every_cluster() {
        for total in [64u32, 1000, 8399, 8400, 70_000, 1_048_576, 3_000_000] {
            let g = Geometry::choose(None, total, 0).unwrap();
            let entries =
                u64::from(g.fat_sectors) * u64::from(SECTOR) * 8 / u64::from(g.kind.bits());
            assert!(entries >= u64::from(g.clusters) + 2, "{g:?}");
            let used = g.data_start().0 + g.clusters * g.sectors_per_cluster;
            assert!(used <= total, "{g:?}");
        }
    }
}
