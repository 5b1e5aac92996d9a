//! The boot sector with its BIOS Parameter Block (fatgen103 §3.1-§3.3) and
//! the FAT32 FSInfo sector (§5).

use super::FatType;
use super::geometry::{Geometry, NUM_FATS, SECTOR};

/// `BPB_Media` (fatgen103 §3.1): 0xF8, "fixed (non-removable) media", the
/// value for anything that is not a floppy. FAT[0] repeats it.
pub const MEDIA: u8 = 0xF8;
/// Boot signature at bytes 510-511 of the boot sector and FSInfo (§3.1, §5).
const SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// `BS_BootSig`: 0x29 says volume id, label and type string follow (§3.2).
const EXT_BOOT_SIG: u8 = 0x29;
/// `BS_DrvNum` for a hard disk (§3.2).
const DRIVE_NUMBER: u8 = 0x80;
/// `BPB_SecPerTrk` / `BPB_NumHeads`: the 32 x 64 geometry mkfs.fat uses for
/// image files; only INT 13h CHS code reads them.
const SECTORS_PER_TRACK: u16 = 32;
const HEADS: u16 = 64;
/// Boot code for a volume that is not bootable: `int 18h` (try the next boot
/// device), then `hlt` forever. Placed where the jump at byte 0 lands.
const NO_BOOT_CODE: [u8; 5] = [0xCD, 0x18, 0xF4, 0xEB, 0xFD];
/// FAT32 sector numbers within the reserved region (§3.3 `BPB_FSInfo`,
/// `BPB_BkBootSec`: "no value other than 6 is recommended").
pub const FSINFO_SECTOR: u32 = 1;
pub const BACKUP_BOOT_SECTOR: u32 = 6;

/// The fields of a boot sector that vary; the rest are fixed above.
pub struct BootSector {
    pub geometry: Geometry,
    /// `BPB_HiddSec`: sectors before the volume on its disk (the partition's
    /// LBA), read by boot code; 0 for an unpartitioned image.
    pub hidden_sectors: u32,
    /// `BS_VolID`.
    pub volume_id: u32,
    /// `BS_VolLab`, space padded.
    pub label: [u8; 11],
}

impl BootSector {
    pub fn encode(&self) -> [u8; SECTOR as usize] {
        let g = &self.geometry;
        let fat32 = g.kind == FatType::Fat32;
        let mut b = [0u8; SECTOR as usize];
        // BS_jmpBoot: a short jump over the BPB, then NOP.
        let code_at: u8 = if fat32 { 0x5A } else { 0x3E };
        b[0..3].copy_from_slice(&[0xEB, code_at - 2, 0x90]);
        b[3..11].copy_from_slice(b"SMELT   "); // BS_OEMName
        b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes()); // BPB_BytsPerSec
        b[13] = g.sectors_per_cluster as u8; // BPB_SecPerClus
        b[14..16].copy_from_slice(&(g.reserved_sectors as u16).to_le_bytes()); // BPB_RsvdSecCnt
        b[16] = NUM_FATS as u8; // BPB_NumFATs
        b[17..19].copy_from_slice(&(g.root_entries as u16).to_le_bytes()); // BPB_RootEntCnt
        // BPB_TotSec16 when it fits (and never for FAT32), else BPB_TotSec32.
        let (tot16, tot32) = match u16::try_from(g.total_sectors) {
            Ok(n) if !fat32 => (n, 0),
            _ => (0, g.total_sectors),
        };
        b[19..21].copy_from_slice(&tot16.to_le_bytes());
        b[21] = MEDIA; // BPB_Media
        let fat16_size = if fat32 { 0 } else { g.fat_sectors as u16 };
        b[22..24].copy_from_slice(&fat16_size.to_le_bytes()); // BPB_FATSz16
        b[24..26].copy_from_slice(&SECTORS_PER_TRACK.to_le_bytes()); // BPB_SecPerTrk
        b[26..28].copy_from_slice(&HEADS.to_le_bytes()); // BPB_NumHeads
        b[28..32].copy_from_slice(&self.hidden_sectors.to_le_bytes()); // BPB_HiddSec
        b[32..36].copy_from_slice(&tot32.to_le_bytes()); // BPB_TotSec32
        let ext = if fat32 {
            b[36..40].copy_from_slice(&g.fat_sectors.to_le_bytes()); // BPB_FATSz32
            // 40 BPB_ExtFlags 0: the FAT is mirrored; 42 BPB_FSVer 0.0.
            b[44..48].copy_from_slice(&2u32.to_le_bytes()); // BPB_RootClus
            b[48..50].copy_from_slice(&(FSINFO_SECTOR as u16).to_le_bytes()); // BPB_FSInfo
            b[50..52].copy_from_slice(&(BACKUP_BOOT_SECTOR as u16).to_le_bytes()); // BPB_BkBootSec
            64 // 52..64 BPB_Reserved
        } else {
            36
        };
        b[ext] = DRIVE_NUMBER; // BS_DrvNum; ext+1 BS_Reserved1
        b[ext + 2] = EXT_BOOT_SIG; // BS_BootSig
        b[ext + 3..ext + 7].copy_from_slice(&self.volume_id.to_le_bytes()); // BS_VolID
        b[ext + 7..ext + 18].copy_from_slice(&self.label); // BS_VolLab
        let fs_type: &[u8; 8] = match g.kind {
            FatType::Fat12 => b"FAT12   ",
            FatType::Fat16 => b"FAT16   ",
            FatType::Fat32 => b"FAT32   ",
        };
        b[ext + 18..ext + 26].copy_from_slice(fs_type); // BS_FilSysType
        let code = usize::from(code_at);
        b[code..code + NO_BOOT_CODE.len()].copy_from_slice(&NO_BOOT_CODE);
        b[510..512].copy_from_slice(&SIGNATURE);
        b
    }
}

/// The FAT32 FSInfo sector (fatgen103 §5).
pub struct FsInfo {
    /// `FSI_Free_Count`: free clusters.
    pub free_count: u32,
    /// `FSI_Nxt_Free`: where to start looking for a free cluster, or
    /// 0xFFFFFFFF for "unknown".
    pub next_free: u32,
}

impl FsInfo {
    const LEAD_SIG: u32 = 0x4161_5252;
    const STRUC_SIG: u32 = 0x6141_7272;
    const TRAIL_SIG: u32 = 0xAA55_0000;

    pub fn encode(&self) -> [u8; SECTOR as usize] {
        let mut b = [0u8; SECTOR as usize];
        b[0..4].copy_from_slice(&Self::LEAD_SIG.to_le_bytes()); // FSI_LeadSig
        b[484..488].copy_from_slice(&Self::STRUC_SIG.to_le_bytes()); // FSI_StrucSig
        b[488..492].copy_from_slice(&self.free_count.to_le_bytes());
        b[492..496].copy_from_slice(&self.next_free.to_le_bytes());
        b[508..512].copy_from_slice(&Self::TRAIL_SIG.to_le_bytes()); // FSI_TrailSig
        b
    }
}
