//! The MBR in LBA 0 (UEFI 2.10 §5.2.1 "Legacy Master Boot Record", §5.2.3
//! "Protective MBR"): boot code, disk signature, four partition records and
//! the 0x55 0xAA signature. One writer for every MBR smelt makes:
//!
//! - a GPT's protective MBR, with optional hybrid records mirroring GPT
//!   partitions ([`MbrOptions`], written by [`GptDisk::primary_with`]);
//! - isohybrid boot code (syslinux `utils/isohybrid.c`, xorriso
//!   `-isohybrid-mbr`): `isohdpfx.bin` loads the boot image whose 512-byte
//!   LBA is at byte 432 ([`BootCode::Isohybrid`]), used by the hybrid ISO
//!   and the raw disk alike;
//! - the MBR-only hybrid ISO, whose records describe no GPT ([`Mbr`]).
//!
//! Non-goals: reading MBRs (the GPT reader only checks the 0xEE record),
//! extended partitions.

use super::{GptDisk, GptError, Lba};

/// Bytes of MBR bootstrap code (§5.2.1, `BootCode`).
pub const MBR_BOOT_CODE_SIZE: usize = 440;
/// Bytes of isohybrid boot code taken from its template (isohybrid.c
/// copies 432; 432..440 hold the boot image LBA and four zero bytes).
pub const ISOHYBRID_CODE_SIZE: usize = 432;
/// MBR partition type of the protective partition (§5.2.3).
pub const MBR_TYPE_PROTECTIVE: u8 = 0xEE;
/// MBR partition type of an EFI System Partition (§5.2.2).
pub const MBR_TYPE_EFI: u8 = 0xEF;
/// Byte offset of `UniqueMBRDiskSignature` (§5.2.1, 4 bytes).
const DISK_SIGNATURE: usize = 440;
/// Byte offset of the first of the four 16-byte partition records.
const RECORDS: usize = 446;
/// CHS value meaning "use the LBA fields" (xorriso writes it for the ESP of
/// an MBR-only isohybrid image).
const CHS_LBA_ONLY: [u8; 3] = [0xFE, 0xFF, 0xFF];

/// The geometry the records' CHS fields are computed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Geometry {
    /// 255 heads × 63 sectors, what every BIOS since LBA assist and gdisk
    /// use; 0xFFFFFF past cylinder 1023, as §5.2.3 asks.
    #[default]
    Lba255x63,
    /// 64 heads × 32 sectors (one cylinder = 1 MiB), isohybrid.c's and
    /// xorriso's geometry for hybrid ISOs; past cylinder 1023 the last
    /// addressable CHS, as isohybrid.c clamps.
    Isohybrid64x32,
}

impl Geometry {
    /// The 3-byte CHS field for `lba` (head, sector | cylinder bits 8-9 << 6,
    /// cylinder bits 0-7).
    pub fn chs(self, lba: u64) -> [u8; 3] {
        let (heads, sectors, clamp) = match self {
            Geometry::Lba255x63 => (255, 63, None),
            Geometry::Isohybrid64x32 => (64, 32, Some((1023, 63, 32))),
        };
        let cyl = lba / (heads * sectors);
        let (c, h, s) = match clamp {
            _ if cyl <= 1023 => (cyl, (lba / sectors) % heads, lba % sectors + 1),
            None => return [0xFF; 3],
            Some(last) => last,
        };
        [h as u8, (s as u8) | (((c >> 2) & 0xC0) as u8), c as u8]
    }
}

/// The 440 bytes of boot code at the start of LBA 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootCode<'a> {
    /// Zeros.
    #[default]
    None,
    /// Up to [`MBR_BOOT_CODE_SIZE`] bytes (e.g. syslinux's gptmbr.bin); the
    /// rest is zero.
    Plain(&'a [u8]),
    /// isohybrid: the first [`ISOHYBRID_CODE_SIZE`] bytes of `code`
    /// (`isohdpfx.bin`), then `boot_lba` (u32 LE at byte 432: the 512-byte
    /// sector of `isolinux.bin`, which the code loads) and zero at 436
    /// (syslinux `utils/isohybrid.c`).
    Isohybrid { code: &'a [u8], boot_lba: u32 },
}

impl BootCode<'_> {
    fn write(&self, m: &mut [u8; 512]) -> Result<(), GptError> {
        match *self {
            BootCode::None => {}
            BootCode::Plain(code) => {
                if code.len() > MBR_BOOT_CODE_SIZE {
                    return Err(GptError::BootCodeTooLong(code.len()));
                }
                m[..code.len()].copy_from_slice(code);
            }
            BootCode::Isohybrid { code, boot_lba } => {
                let n = code.len().min(ISOHYBRID_CODE_SIZE);
                m[..n].copy_from_slice(&code[..n]);
                m[432..436].copy_from_slice(&boot_lba.to_le_bytes());
                m[436..440].fill(0);
            }
        }
        Ok(())
    }
}

/// One 16-byte MBR partition record (§5.2.1, table 5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MbrRecord {
    /// `BootIndicator` 0x80 (active) when true, 0x00 otherwise.
    pub bootable: bool,
    /// `OSType`, e.g. [`MBR_TYPE_EFI`], 0x83 (Linux), 0x00 (isohybrid's
    /// whole-image partition).
    pub os_type: u8,
    /// `StartingLBA`; stored capped at 2^32 - 1.
    pub first_lba: Lba,
    /// `SizeInLBA`; stored capped at 2^32 - 1.
    pub sectors: u64,
    /// CHS fields from the MBR's [`Geometry`]; `false` writes the
    /// "LBA only" value 0xFE 0xFF 0xFF in both.
    pub chs: bool,
}

impl MbrRecord {
    fn encode(&self, g: Geometry) -> [u8; 16] {
        let first = self.first_lba.0;
        let last = (first + self.sectors).saturating_sub(1);
        let (start, end) = if self.chs {
            (g.chs(first), g.chs(last))
        } else {
            (CHS_LBA_ONLY, CHS_LBA_ONLY)
        };
        let cap = |v: u64| v.min(u64::from(u32::MAX)) as u32;
        let mut r = [0u8; 16];
        r[0] = if self.bootable { 0x80 } else { 0 };
        r[1..4].copy_from_slice(&start);
        r[4] = self.os_type;
        r[5..8].copy_from_slice(&end);
        r[8..12].copy_from_slice(&cap(first).to_le_bytes());
        r[12..16].copy_from_slice(&cap(self.sectors).to_le_bytes());
        r
    }
}

/// A whole MBR sector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mbr<'a> {
    pub boot_code: BootCode<'a>,
    /// `UniqueMBRDiskSignature` (derive it from a hash).
    pub disk_signature: [u8; 4],
    pub geometry: Geometry,
    /// Records for slots 1..=4, in order; at most four.
    pub records: Vec<MbrRecord>,
}

impl Mbr<'_> {
    /// LBA 0: boot code, disk signature, records, 0x55 0xAA.
    pub fn encode(&self) -> Result<[u8; 512], GptError> {
        if self.records.len() > 4 {
            return Err(GptError::Hybrid {
                index: 4,
                what: "an MBR has room for only four entries".into(),
            });
        }
        let mut m = [0u8; 512];
        self.boot_code.write(&mut m)?;
        m[DISK_SIGNATURE..DISK_SIGNATURE + 4].copy_from_slice(&self.disk_signature);
        for (i, r) in self.records.iter().enumerate() {
            m[RECORDS + 16 * i..RECORDS + 16 * (i + 1)].copy_from_slice(&r.encode(self.geometry));
        }
        m[510] = 0x55;
        m[511] = 0xAA;
        Ok(m)
    }
}

/// An extra MBR entry of a hybrid MBR, mirroring a GPT partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MbrPartition {
    /// `BootIndicator` 0x80 (active) when true, 0x00 otherwise.
    pub bootable: bool,
    /// `OSType`, e.g. [`MBR_TYPE_EFI`], 0x83 (Linux), 0x0C (FAT32 LBA).
    pub os_type: u8,
    /// `StartingLBA`; must fit 32 bits.
    pub first_lba: Lba,
    /// Last sector, inclusive (`StartingLBA + SizeInLBA - 1`); must fit 32 bits.
    pub last_lba: Lba,
}

/// What goes into a GPT disk's LBA 0 besides the protective 0xEE entry.
///
/// A pure protective MBR (the default) is what the UEFI spec requires and
/// what every UEFI firmware and OS wants. The hybrid knobs exist for legacy
/// BIOS paths only:
/// - `protective_bootable`: some BIOSes (old Dell, HP, Lenovo) refuse to
///   hand a disk to its MBR boot code unless an MBR entry is active; marking
///   the 0xEE entry 0x80 satisfies them (UEFI says the flag is undefined on
///   non-UEFI systems and must be ignored by UEFI firmware).
/// - `hybrid`: up to three extra entries mirroring GPT partitions, for BIOS
///   boot code or tools that only read MBR (an 0xEF ESP for El Torito-style
///   ISO-hybrid images, an active 0x83 partition for MBR boot code that
///   chains to the active partition). The 0xEE entry then covers LBA 1 up to
///   the first hybrid partition only, as gdisk does, so MBR entries never
///   overlap. Hybrid MBRs break if the GPT is later edited; use them only on
///   images that need them.
///
/// The disk signature is the first four bytes of the disk GUID, so it is
/// deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MbrOptions<'a> {
    pub boot_code: BootCode<'a>,
    /// CHS geometry of the records (isohybrid images use 64 × 32).
    pub geometry: Geometry,
    /// Mark the 0xEE entry active (0x80).
    pub protective_bootable: bool,
    /// Extra MBR entries, written after the 0xEE one in slots 2..=4.
    pub hybrid: Vec<MbrPartition>,
}

/// LBA 0 of `disk` (§5.2.3, table 5.4): the 0xEE record in slot 1, then
/// any hybrid records.
pub(super) fn protective_mbr(disk: &GptDisk, opts: &MbrOptions<'_>) -> Result<[u8; 512], GptError> {
    let mut records = vec![MbrRecord {
        bootable: opts.protective_bootable,
        os_type: MBR_TYPE_PROTECTIVE,
        first_lba: Lba(1),
        // Without hybrid entries, 0xEE covers the whole disk (capped at
        // 2^32-1 sectors); with them, LBA 1 up to the first one.
        sectors: match opts.hybrid.iter().map(|h| h.first_lba.0).min() {
            Some(first) => first - 1,
            None => (disk.sectors() - 1).min(u64::from(u32::MAX)),
        },
        chs: true,
    }];
    records.extend(hybrid_records(disk, &opts.hybrid)?);
    let mut disk_signature = [0u8; 4];
    disk_signature.copy_from_slice(&disk.disk_guid.0[..4]);
    Mbr {
        boot_code: opts.boot_code,
        disk_signature,
        geometry: opts.geometry,
        records,
    }
    .encode()
}

/// Checks hybrid entries: at most three, inside the usable area and 32-bit
/// LBAs, not overlapping each other.
fn hybrid_records(disk: &GptDisk, entries: &[MbrPartition]) -> Result<Vec<MbrRecord>, GptError> {
    if entries.len() > 3 {
        return Err(GptError::Hybrid {
            index: 3,
            what: "an MBR has room for only three entries beside 0xEE".into(),
        });
    }
    let mut out = Vec::new();
    for (index, h) in entries.iter().enumerate() {
        let err = |what: String| GptError::Hybrid { index, what };
        if h.os_type == 0 || h.os_type == MBR_TYPE_PROTECTIVE {
            return Err(err(format!("type {:#04x} is reserved", h.os_type)));
        }
        if h.first_lba < super::FIRST_USABLE
            || h.last_lba > disk.last_usable()
            || h.last_lba < h.first_lba
        {
            return Err(err(format!(
                "{}..={} is not inside the usable area",
                h.first_lba.0, h.last_lba.0
            )));
        }
        if h.last_lba.0 > u64::from(u32::MAX) {
            return Err(err("ends past the 2 TiB an MBR entry can address".into()));
        }
        for (j, o) in entries.iter().enumerate().take(index) {
            if h.first_lba <= o.last_lba && o.first_lba <= h.last_lba {
                return Err(err(format!("overlaps hybrid entry {j}")));
            }
        }
        out.push(MbrRecord {
            bootable: h.bootable,
            os_type: h.os_type,
            first_lba: h.first_lba,
            sectors: h.last_lba.0 - h.first_lba.0 + 1,
            chs: true,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_addresses() {
        let chs = |lba| Geometry::Lba255x63.chs(lba);
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(1), [0, 2, 0]);
        assert_eq!(chs(63), [1, 1, 0]);
        // Cylinder 256: its top two bits go into the sector byte.
        assert_eq!(chs(256 * 255 * 63), [0, 0x41, 0]);
        assert_eq!(chs(1024 * 255 * 63 - 1), [254, 0xFF, 0xFF]);
        assert_eq!(chs(1024 * 255 * 63), [0xFF; 3]);
    }

    #[test]
    fn isohybrid_chs_matches_xorriso() {
        let chs = |lba| Geometry::Isohybrid64x32.chs(lba);
        // xorriso's partition 1 of a 4096-sector image ends at 3f 20 01.
        assert_eq!(chs(4095), [0x3F, 0x20, 0x01]);
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(u64::from(u32::MAX)), [63, 0xE0, 0xFF]);
    }

    #[test]
    fn isohybrid_boot_code_carries_the_boot_lba() {
        let code = [0xAAu8; 440];
        let m = Mbr {
            boot_code: BootCode::Isohybrid {
                code: &code,
                boot_lba: 0x0102_0304,
            },
            disk_signature: [9, 8, 7, 6],
            ..Mbr::default()
        }
        .encode()
        .unwrap();
        assert!(m[..432].iter().all(|&b| b == 0xAA));
        assert_eq!(&m[432..444], &[4, 3, 2, 1, 0, 0, 0, 0, 9, 8, 7, 6]);
        assert_eq!(&m[510..], &[0x55, 0xAA]);
        let long = [0u8; 441];
        let plain = Mbr {
            boot_code: BootCode::Plain(&long),
            ..Mbr::default()
        };
        assert!(matches!(
            plain.encode(),
            Err(GptError::BootCodeTooLong(441))
        ));
    }

    #[test]
    fn lba_only_records_and_caps() {
        let r = MbrRecord {
            bootable: false,
            os_type: MBR_TYPE_EFI,
            first_lba: Lba(64),
            sectors: 1 << 40,
            chs: false,
        }
        .encode(Geometry::Isohybrid64x32);
        assert_eq!(&r[..8], &[0, 0xFE, 0xFF, 0xFF, 0xEF, 0xFE, 0xFF, 0xFF]);
        assert_eq!(&r[8..], &[64, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
}
