//! isohybrid: an MBR (and optionally a GPT) in the ISO's System Area so the
//! same bytes boot from a USB stick (BIOS via syslinux's `isohdpfx.bin`,
//! UEFI via the EFI System Partition) as well as from a CD.
//!
//! MBR without `gpt`, as syslinux `utils/isohybrid.c` and xorriso
//! `-isohybrid-mbr` write it: boot code 0..432 from the caller, the boot image's 512-byte LBA at
//! 432 (u32 LE; isohdpfx.bin loads isolinux.bin from there), 0 at 436, the
//! disk signature at 440, partition 1 bootable (0x80), type 0x00, covering
//! the whole image from sector 0; partition 2 type 0xEF on the EFI image
//! with "LBA only" CHS (0xFE 0xFF 0xFF), as xorriso does. CHS values use the
//! 64 heads x 32 sectors geometry of both tools, so one cylinder is 1 MiB,
//! and the image is padded to whole cylinders (xorriso's `-partition_cyl_align`
//! "auto" does the same for isohybrid images).
//!
//! GPT (UEFI 2.10 §5.3), with `gpt`: header at 512-byte LBA 1, 128 entries
//! from LBA 2, backup entries and header in the last 33 sectors (inside the
//! cylinder padding, which is part of the ISO volume but holds no file).
//! The only entry is the EFI image as an EFI System Partition. This is where
//! smelt departs from xorriso's `-isohybrid-gpt-basdat`, whose GPT has a
//! basic-data partition from LBA 0 (overlapping the GPT itself) and whose
//! MBR keeps the overlapping whole-image partition 1, so that `sgdisk -v`
//! reports "Invalid partition data!": with `gpt` the MBR is instead a
//! gdisk-style hybrid MBR, entry 1 type 0xEE from LBA 1 up to the ESP (the
//! GPT and the ISO metadata before it), entry 2 the ESP (type 0xEF, marked
//! active for BIOSes that want an active partition before they boot a USB
//! disk). UEFI firmware accepts a 0xEE entry starting at LBA 1 as a
//! protective MBR (EDK2 Gpt.c `PartitionInstallGptChildHandles`) and boots
//! the GPT's ESP; BIOSes run the MBR code whatever the table says; and
//! `sgdisk -v` finds no problems.
//!
//! Every GUID and the disk signature derive from `uuid_seed` by SHA-256.

use sha2::{Digest as _, Sha256};

/// Bytes of boot code taken from the caller's MBR template (isohybrid.c
/// copies 432; 432..446 hold the boot LBA, signature and reserved bytes).
pub const MBR_CODE: usize = 432;
const SECTOR: u64 = 512;
/// isohybrid's default geometry: 64 heads, 32 sectors per track.
const HEADS: u64 = 64;
const SECTORS_PER_TRACK: u64 = 32;
/// One cylinder in 512-byte sectors (1 MiB): the image size unit.
pub const CYLINDER: u64 = HEADS * SECTORS_PER_TRACK;
/// GPT: 128 entries of 128 bytes (UEFI §5.3.2's minimum array, 16 KiB).
const GPT_ENTRIES: u64 = 128;
const GPT_ENTRY: u64 = 128;
const GPT_ARRAY_SECTORS: u64 = GPT_ENTRIES * GPT_ENTRY / SECTOR;
/// Sectors a GPT copy takes: header + entry array (33).
pub const GPT_SECTORS: u64 = 1 + GPT_ARRAY_SECTORS;
const GPT_HEADER_SIZE: u32 = 92;
const GPT_REVISION: u32 = 0x0001_0000;
/// The EFI System Partition type, C12A7328-F81F-11D2-BA4B-00A0C93EC93B, in
/// GPT's mixed-endian byte order (UEFI §5.3.3 Table 5.7).
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
];
const ESP_NAME: &str = "EFI System";
/// MBR partition types: 0x00 for the whole-image partition (as xorriso), 0xEF
/// for the EFI System Partition, 0xEE for GPT protection (UEFI §5.2.3).
const MBR_TYPE_ISO: u8 = 0x00;
const MBR_TYPE_ESP: u8 = 0xEF;
const MBR_TYPE_GPT: u8 = 0xEE;
const ACTIVE: u8 = 0x80;

/// What the System Area must describe. Sectors are 512-byte.
pub struct HybridPlan<'a> {
    pub code: &'a [u8],
    /// The BIOS boot image's first 512-byte sector (0 when there is none).
    pub boot_image: u32,
    /// The EFI image's first sector and sector count.
    pub esp: Option<(u64, u64)>,
    /// Sectors in the whole (padded) image.
    pub total: u64,
    pub gpt: bool,
    pub seed: &'a [u8; 32],
}

fn derive(seed: &[u8; 32], what: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"smelt iso9660 ");
    h.update(what.as_bytes());
    h.update(seed);
    h.finalize().into()
}

/// A version-4-shaped GUID in on-disk order from `seed` and `what`.
fn guid(seed: &[u8; 32], what: &str) -> [u8; 16] {
    let mut g = [0u8; 16];
    g.copy_from_slice(&derive(seed, what)[..16]);
    g[7] = (g[7] & 0x0F) | 0x40; // time_hi_and_version (LE u16): version 4
    g[8] = (g[8] & 0x3F) | 0x80; // clock_seq: RFC 4122 variant
    g
}

/// CHS of a 512-byte sector in the 64 x 32 geometry; past cylinder 1023 the
/// last addressable CHS (isohybrid.c clamps the same way).
fn chs(lba: u64) -> [u8; 3] {
    let c = lba / CYLINDER;
    let (c, h, s) = if c > 1023 {
        (1023, HEADS - 1, SECTORS_PER_TRACK)
    } else {
        (
            c,
            (lba / SECTORS_PER_TRACK) % HEADS,
            lba % SECTORS_PER_TRACK + 1,
        )
    };
    [h as u8, (s as u8) | (((c >> 8) as u8 & 3) << 6), c as u8]
}

fn mbr_partition(status: u8, kind: u8, start: u64, count: u64, real_chs: bool) -> [u8; 16] {
    let mut p = [0u8; 16];
    let lba_only = [0xFE, 0xFF, 0xFF];
    p[0] = status;
    p[1..4].copy_from_slice(&if real_chs { chs(start) } else { lba_only });
    p[4] = kind;
    p[5..8].copy_from_slice(&if real_chs {
        chs(start + count - 1)
    } else {
        lba_only
    });
    p[8..12].copy_from_slice(&(start.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    p[12..16].copy_from_slice(&(count.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    p
}

impl HybridPlan<'_> {
    /// The MBR sector.
    fn mbr(&self) -> [u8; 512] {
        let mut m = [0u8; 512];
        let n = self.code.len().min(MBR_CODE);
        m[..n].copy_from_slice(&self.code[..n]);
        m[432..436].copy_from_slice(&self.boot_image.to_le_bytes());
        let mut sig: [u8; 4] = derive(self.seed, "mbr disk signature")[..4]
            .try_into()
            .unwrap_or([1; 4]);
        if sig == [0; 4] {
            sig = [1, 0, 0, 0];
        }
        m[440..444].copy_from_slice(&sig);
        match (self.gpt, self.esp) {
            (true, Some((start, count))) => {
                m[446..462].copy_from_slice(&mbr_partition(0, MBR_TYPE_GPT, 1, start - 1, true));
                m[462..478].copy_from_slice(&mbr_partition(
                    ACTIVE,
                    MBR_TYPE_ESP,
                    start,
                    count,
                    true,
                ));
            }
            (_, esp) => {
                m[446..462].copy_from_slice(&mbr_partition(
                    ACTIVE,
                    MBR_TYPE_ISO,
                    0,
                    self.total,
                    true,
                ));
                if let Some((start, count)) = esp {
                    m[462..478].copy_from_slice(&mbr_partition(
                        0,
                        MBR_TYPE_ESP,
                        start,
                        count,
                        false,
                    ));
                }
            }
        }
        m[510] = 0x55;
        m[511] = 0xAA;
        m
    }

    /// The GPT entry array (the ESP, then unused entries).
    fn gpt_array(&self) -> Vec<u8> {
        let mut a = vec![0u8; (GPT_ENTRIES * GPT_ENTRY) as usize];
        if let Some((start, count)) = self.esp {
            a[0..16].copy_from_slice(&ESP_TYPE); // PartitionTypeGUID
            a[16..32].copy_from_slice(&guid(self.seed, "esp partition guid")); // UniquePartitionGUID
            a[32..40].copy_from_slice(&start.to_le_bytes()); // StartingLBA
            a[40..48].copy_from_slice(&(start + count - 1).to_le_bytes()); // EndingLBA (inclusive)
            // 48..56 Attributes: none.
            for (i, u) in ESP_NAME.encode_utf16().enumerate() {
                a[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes()); // PartitionName
            }
        }
        a
    }

    /// A GPT header (UEFI §5.3.2 Table 5.5) at `my_lba`, entries at `entries`.
    fn gpt_header(&self, my_lba: u64, alternate: u64, entries: u64, array_crc: u32) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART"); // Signature
        h[8..12].copy_from_slice(&GPT_REVISION.to_le_bytes()); // Revision
        h[12..16].copy_from_slice(&GPT_HEADER_SIZE.to_le_bytes()); // HeaderSize
        // 16..20 HeaderCRC32 below; 20..24 Reserved.
        h[24..32].copy_from_slice(&my_lba.to_le_bytes()); // MyLBA
        h[32..40].copy_from_slice(&alternate.to_le_bytes()); // AlternateLBA
        h[40..48].copy_from_slice(&GPT_SECTORS.saturating_add(1).to_le_bytes()); // FirstUsableLBA
        h[48..56].copy_from_slice(&(self.total - GPT_SECTORS - 1).to_le_bytes()); // LastUsableLBA
        h[56..72].copy_from_slice(&guid(self.seed, "gpt disk guid")); // DiskGUID
        h[72..80].copy_from_slice(&entries.to_le_bytes()); // PartitionEntryLBA
        h[80..84].copy_from_slice(&(GPT_ENTRIES as u32).to_le_bytes()); // NumberOfPartitionEntries
        h[84..88].copy_from_slice(&(GPT_ENTRY as u32).to_le_bytes()); // SizeOfPartitionEntry
        h[88..92].copy_from_slice(&array_crc.to_le_bytes()); // PartitionEntryArrayCRC32
        let crc = crc32(&h[..GPT_HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The first 32 KiB of the image: MBR, and with `gpt` the primary GPT.
    pub fn system_area(&self, len: usize) -> Vec<u8> {
        let mut area = vec![0u8; len];
        area[..512].copy_from_slice(&self.mbr());
        if self.gpt {
            let array = self.gpt_array();
            let header = self.gpt_header(1, self.total - 1, 2, crc32(&array));
            area[512..1024].copy_from_slice(&header);
            area[1024..1024 + array.len()].copy_from_slice(&array);
        }
        area
    }

    /// The last `GPT_SECTORS` sectors of the image: backup entries, header.
    pub fn backup_gpt(&self) -> Vec<u8> {
        let array = self.gpt_array();
        let entries = self.total - GPT_SECTORS;
        let header = self.gpt_header(self.total - 1, 1, entries, crc32(&array));
        let mut out = array;
        out.extend_from_slice(&header);
        out
    }
}

/// CRC-32 (IEEE 802.3, as UEFI §5.3.2 requires) via flate2's zlib CRC.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_matches_xorriso() {
        // xorriso's partition 1 of a 4096-sector image ends at 3f 20 01.
        assert_eq!(chs(4095), [0x3F, 0x20, 0x01]);
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(u64::from(u32::MAX)), [63, 0xE0, 0xFF]);
    }

    #[test]
    fn guids_are_v4_and_distinct() {
        let seed = [7u8; 32];
        let (a, b) = (guid(&seed, "a"), guid(&seed, "b"));
        assert_ne!(a, b);
        assert_eq!(a[7] >> 4, 4);
        assert_eq!(a[8] >> 6, 2);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the CRC-32 check value");
    }
}
