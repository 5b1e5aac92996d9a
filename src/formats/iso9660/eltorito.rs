//! El Torito ("Bootable CD-ROM Format Specification" 1.0, Phoenix/IBM 1995):
//! the boot catalog, and the boot info table that isolinux and GRUB's
//! `eltorito.img` expect to be patched into their image (mkisofs
//! `-boot-info-table`).
//!
//! The catalog is one sector: a validation entry, the initial/default entry
//! and, when both BIOS and EFI images are given, one section header for
//! platform 0xEF (UEFI; assigned after the 1.0 spec, listed in the UEFI
//! specification §13.3.2.1) with one section entry. Only no-emulation
//! entries are written.

use super::records::{Lba, SECTOR};

/// Bytes of every catalog entry (§2.0).
const ENTRY: usize = 32;
/// Platform ids (§2.1, and UEFI §13.3.2.1 for 0xEF).
pub const PLATFORM_X86: u8 = 0;
pub const PLATFORM_EFI: u8 = 0xEF;
/// Boot indicator of a bootable entry (§2.2).
const BOOTABLE: u8 = 0x88;
/// Section header indicator: last header (§2.3; 0x90 would mean more follow).
const FINAL_HEADER: u8 = 0x91;
/// Boot info table: bytes 8..64 of the boot image (mkisofs(8)
/// `-boot-info-table`; isolinux's `bi_pvd`, `bi_file`, `bi_length`,
/// `bi_csum`, 40 reserved bytes).
pub const BOOT_INFO_START: usize = 8;
pub const BOOT_INFO_END: usize = 64;

/// One bootable no-emulation image.
#[derive(Clone, Copy, Debug)]
pub struct BootEntry {
    pub platform: u8,
    /// The image's first sector.
    pub lba: Lba,
    /// Sector Count: "virtual" 512-byte sectors the firmware loads (§2.2).
    pub sectors: u16,
}

fn validation(platform: u8) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[0] = 1; // Header ID
    e[1] = platform; // Platform ID; 2-3 reserved; 4-27 ID string (empty)
    e[30] = 0x55; // Key bytes
    e[31] = 0xAA;
    // Checksum word (28-29): the 16 little-endian words sum to 0.
    let sum = e.chunks(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    e[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    e
}

/// An initial/default (§2.2) or section (§2.4) entry: the same layout, the
/// section entry's selection criteria (byte 12) left at 0 (none).
fn boot_entry(b: &BootEntry) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[0] = BOOTABLE; // Boot Indicator
    e[1] = 0; // Boot Media Type: no emulation
    // 2-3 Load Segment 0 (= 0x7C0), 4 System Type 0, 5 unused.
    e[6..8].copy_from_slice(&b.sectors.to_le_bytes()); // Sector Count
    e[8..12].copy_from_slice(&b.lba.0.to_le_bytes()); // Load RBA
    e
}

/// The catalog sector: `first` is the default entry, `efi` an extra EFI
/// section. The validation entry's platform is the default entry's.
pub fn catalog(first: &BootEntry, efi: Option<&BootEntry>) -> Vec<u8> {
    let mut c = Vec::with_capacity(SECTOR as usize);
    c.extend_from_slice(&validation(first.platform));
    c.extend_from_slice(&boot_entry(first));
    if let Some(efi) = efi {
        let mut h = [0u8; ENTRY];
        h[0] = FINAL_HEADER; // Header Indicator
        h[1] = efi.platform; // Platform ID
        h[2..4].copy_from_slice(&1u16.to_le_bytes()); // Number of section entries
        c.extend_from_slice(&h);
        c.extend_from_slice(&boot_entry(efi));
    }
    c.resize(SECTOR as usize, 0);
    c
}

/// Patches the boot info table into `image` (at least 64 bytes): the PVD's
/// sector, the image's sector and length, and the 32-bit sum of its
/// little-endian words from byte 64 on (a final partial word zero-padded).
pub fn patch_boot_info(image: &mut [u8], pvd: Lba, lba: Lba) {
    let csum = image[BOOT_INFO_END..].chunks(4).fold(0u32, |s, w| {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        s.wrapping_add(u32::from_le_bytes(word))
    });
    let mut table = [0u8; BOOT_INFO_END - BOOT_INFO_START];
    table[0..4].copy_from_slice(&pvd.0.to_le_bytes()); // bi_pvd
    table[4..8].copy_from_slice(&lba.0.to_le_bytes()); // bi_file
    table[8..12].copy_from_slice(&(image.len() as u32).to_le_bytes()); // bi_length
    table[12..16].copy_from_slice(&csum.to_le_bytes()); // bi_csum
    image[BOOT_INFO_START..BOOT_INFO_END].copy_from_slice(&table);
}

/// The Sector Count for an EFI image of `len` bytes: its size in 512-byte
/// sectors (what xorriso writes: 2880 for a 1.44 MB image), or 0 when that
/// does not fit 16 bits. OVMF copes with both: EDK2's PartitionDxe
/// (ElTorito.c `PartitionInstallElToritoChildHandles`) makes a child block
/// device of `SectorCount` *medium* blocks for no-emulation entries (so 4x
/// the image on a 2048-byte CD, which is harmless) and of the rest of the
/// medium when the count is below 2; the FAT driver then takes the volume
/// size from the image's own BPB.
pub fn efi_sectors(len: u64) -> u16 {
    u16::try_from(len.div_ceil(512)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_layout() {
        let bios = BootEntry {
            platform: PLATFORM_X86,
            lba: Lba(754),
            sectors: 4,
        };
        let efi = BootEntry {
            platform: PLATFORM_EFI,
            lba: Lba(34),
            sectors: 2880,
        };
        let c = catalog(&bios, Some(&efi));
        // As xorriso writes for the same images (see the reference test).
        assert_eq!(&c[..32], &{
            let mut v = [0u8; 32];
            v[0] = 1;
            v[28..32].copy_from_slice(&[0xAA, 0x55, 0x55, 0xAA]);
            v
        });
        assert_eq!(&c[32..44], &[0x88, 0, 0, 0, 0, 0, 4, 0, 0xF2, 2, 0, 0]);
        assert_eq!(&c[64..68], &[0x91, 0xEF, 1, 0]);
        assert_eq!(
            &c[96..108],
            &[0x88, 0, 0, 0, 0, 0, 0x40, 0x0B, 0x22, 0, 0, 0]
        );
        assert_eq!(efi_sectors(1_474_560), 2880);
        assert_eq!(efi_sectors(64 << 20), 0);
    }

    #[test]
    fn boot_info_table() {
        let mut img = vec![0u8; 70];
        img[64..70].copy_from_slice(&[1, 0, 0, 0, 2, 0]);
        patch_boot_info(&mut img, Lba(16), Lba(40));
        assert_eq!(
            &img[8..24],
            &[16, 0, 0, 0, 40, 0, 0, 0, 70, 0, 0, 0, 3, 0, 0, 0]
        );
    }
}
