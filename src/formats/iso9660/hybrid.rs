//! isohybrid: an MBR (and optionally a GPT) in the ISO's System Area so the
//! same bytes boot from a USB stick (BIOS via syslinux's `isohdpfx.bin`,
//! UEFI via the EFI System Partition) as well as from a CD. The bytes come
//! from the one GPT/MBR writer, [`crate::formats::gpt`]; this file decides
//! only what the tables describe.
//!
//! MBR without `gpt`, as syslinux `utils/isohybrid.c` and xorriso
//! `-isohybrid-mbr` write it: isohybrid boot code (432 bytes from the
//! caller, the boot image's 512-byte LBA at 432, 0 at 436,
//! [`BootCode::Isohybrid`]), the disk signature at 440, partition 1
//! bootable (0x80), type 0x00, covering the whole image from sector 0;
//! partition 2 type 0xEF on the EFI image with "LBA only" CHS (0xFE 0xFF
//! 0xFF), as xorriso does. CHS values use the 64 heads x 32 sectors
//! geometry of both tools, so one cylinder is 1 MiB, and the image is padded
//! to whole cylinders (xorriso's `-partition_cyl_align` "auto" does the same
//! for isohybrid images).
//!
//! GPT (UEFI 2.10 §5.3), with `gpt`: header at 512-byte LBA 1, 128 entries
//! from LBA 2, backup entries and header in the last 33 sectors (inside the
//! cylinder padding, which is part of the ISO volume but holds no file).
//! Entry 1 is the EFI image as an EFI System Partition; the caller's extra
//! partitions ([`super::HybridPartition`], e.g. a config slot stored as a
//! file of the image) follow in order. This is where smelt departs from
//! xorriso's `-isohybrid-gpt-basdat`, whose GPT has a basic-data partition
//! from LBA 0 (overlapping the GPT itself) and whose MBR keeps the
//! overlapping whole-image partition 1, so that `sgdisk -v` reports
//! "Invalid partition data!": with `gpt` the MBR is instead a gdisk-style
//! hybrid MBR, entry 1 type 0xEE from LBA 1 up to the ESP (the GPT and the
//! ISO metadata before it), entry 2 the ESP (type 0xEF, marked active for
//! BIOSes that want an active partition before they boot a USB disk). UEFI
//! firmware accepts a 0xEE entry starting at LBA 1 as a protective MBR
//! (EDK2 Gpt.c `PartitionInstallGptChildHandles`) and boots the GPT's ESP;
//! BIOSes run the MBR code whatever the table says; and `sgdisk -v` finds no
//! problems.
//!
//! Every GUID derives from `uuid_seed` by [`Guid::derive`] (labels `iso
//! disk`, `iso esp`, `iso partition NAME`); the MBR disk signature is the
//! first four bytes of the disk GUID, with or without a GPT.

use crate::formats::gpt::{
    self, BootCode, Geometry, GptDisk, GptError, Guid, Lba, MBR_TYPE_EFI, Mbr, MbrOptions,
    MbrPartition, MbrRecord, Partition,
};

/// Bytes of boot code taken from the caller's MBR template.
pub const MBR_CODE: usize = gpt::mbr::ISOHYBRID_CODE_SIZE;
/// isohybrid's default geometry: 64 heads, 32 sectors per track.
const GEOMETRY: Geometry = Geometry::Isohybrid64x32;
/// One cylinder in 512-byte sectors (1 MiB): the image size unit.
pub const CYLINDER: u64 = 64 * 32;
/// Sectors the backup GPT takes at the end of the image (entries, header).
pub const GPT_SECTORS: u64 = gpt::BACKUP_SECTORS;
/// GPT name of the ESP entry.
const ESP_NAME: &str = "EFI System";
/// MBR type of the whole-image partition of an MBR-only image (as xorriso).
const MBR_TYPE_ISO: u8 = 0x00;

/// An extra GPT partition, resolved to 512-byte sectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraPartition {
    pub type_guid: Guid,
    pub name: String,
    pub first: u64,
    pub sectors: u64,
}

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
    /// GPT partitions after the ESP (only with `gpt`).
    pub extra: Vec<ExtraPartition>,
    pub seed: &'a [u8; 32],
}

impl HybridPlan<'_> {
    fn guid(&self, label: &str) -> Guid {
        Guid::derive(self.seed, label)
    }

    fn boot_code(&self) -> BootCode<'_> {
        BootCode::Isohybrid {
            code: self.code,
            boot_lba: self.boot_image,
        }
    }

    /// The image's GPT: the ESP, then the extra partitions.
    fn disk(&self) -> GptDisk {
        let esp = self.esp.map(|(start, count)| Partition {
            type_guid: Guid::EFI_SYSTEM,
            guid: self.guid("iso esp"),
            first_lba: Lba(start),
            last_lba: Lba(start + count - 1),
            attributes: 0,
            name: ESP_NAME.into(),
        });
        let extra = self.extra.iter().map(|p| Partition {
            type_guid: p.type_guid,
            guid: self.guid(&format!("iso partition {}", p.name)),
            first_lba: Lba(p.first),
            last_lba: Lba(p.first + p.sectors - 1),
            attributes: 0,
            name: p.name.clone(),
        });
        GptDisk {
            disk_guid: self.guid("iso disk"),
            size_bytes: self.total * gpt::SECTOR_SIZE,
            partitions: esp.into_iter().chain(extra).collect(),
        }
    }

    /// The MBR of an image without a GPT.
    fn mbr_only(&self) -> Result<[u8; 512], GptError> {
        let mut records = vec![MbrRecord {
            bootable: true,
            os_type: MBR_TYPE_ISO,
            first_lba: Lba(0),
            sectors: self.total,
            chs: true,
        }];
        if let Some((start, count)) = self.esp {
            records.push(MbrRecord {
                bootable: false,
                os_type: MBR_TYPE_EFI,
                first_lba: Lba(start),
                sectors: count,
                chs: false,
            });
        }
        let mut disk_signature = [0u8; 4];
        disk_signature.copy_from_slice(&self.guid("iso disk").0[..4]);
        Mbr {
            boot_code: self.boot_code(),
            disk_signature,
            geometry: GEOMETRY,
            records,
        }
        .encode()
    }

    /// The first `len` bytes of the image (its 32 KiB System Area): the MBR,
    /// and with `gpt` the primary GPT.
    pub fn system_area(&self, len: usize) -> Result<Vec<u8>, GptError> {
        let head = if self.gpt {
            let hybrid = self.esp.map(|(start, count)| MbrPartition {
                bootable: true,
                os_type: MBR_TYPE_EFI,
                first_lba: Lba(start),
                last_lba: Lba(start + count - 1),
            });
            self.disk().primary_with(&MbrOptions {
                boot_code: self.boot_code(),
                geometry: GEOMETRY,
                protective_bootable: false,
                hybrid: hybrid.into_iter().collect(),
            })?
        } else {
            self.mbr_only()?.to_vec()
        };
        let mut area = vec![0u8; len];
        area[..head.len()].copy_from_slice(&head);
        Ok(area)
    }

    /// The last [`GPT_SECTORS`] sectors of the image: backup entries, header.
    pub fn backup_gpt(&self) -> Result<Vec<u8>, GptError> {
        self.disk().backup()
    }
}
