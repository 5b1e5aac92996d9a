//! GUID Partition Table writer and reader, with its protective MBR (UEFI
//! Specification 2.10, chapter 5: §5.2.3 "Protective MBR", §5.3.2 "GPT
//! Header", §5.3.3 "GPT Partition Entry Array").
//!
//! Scope: 512-byte logical blocks only; a fixed 128-entry, 128-byte-per-entry
//! array (16 KiB, 32 sectors), so the first usable LBA is always 34 and the
//! last usable LBA is the disk's last LBA minus 33. [`GptDisk::primary`] gives
//! LBA 0..=33 (protective MBR, header, entries), [`GptDisk::backup`] the last
//! 33 sectors (entries, then the backup header in the very last sector); the
//! caller writes the partitions' contents between them. [`read`] parses and
//! CRC-checks both copies (for tests and `smelt inspect`).
//!
//! Files: [`guid`] (the GUID type, type GUIDs, [`Guid::derive`]), [`mbr`]
//! (LBA 0: the protective MBR, hybrid MBRs, isohybrid boot code; also the
//! MBR-only hybrid ISO's), `read.rs` (the reader); this file has the header
//! and entry array and their writer. Every GPT and MBR smelt writes (raw
//! disk, hybrid ISO) comes from here.
//!
//! Hybrid MBRs (extra MBR entries beside the 0xEE one, [`MbrOptions`]) are
//! outside the UEFI spec but needed by some legacy-BIOS boot paths; see
//! [`MbrOptions`] for when to use them.
//!
//! Non-goals: 4 KiB-sector disks, entry arrays of another size, partition
//! alignment policy (the caller picks LBAs; 1 MiB alignment is its choice),
//! repairing a damaged table, MBR-only disks.

use std::fmt;
use std::io;

pub mod guid;
pub mod mbr;
mod read;

pub use guid::Guid;
pub use mbr::{
    BootCode, Geometry, MBR_BOOT_CODE_SIZE, MBR_TYPE_EFI, MBR_TYPE_PROTECTIVE, Mbr, MbrOptions,
    MbrPartition, MbrRecord,
};
pub use read::read;

/// Bytes per logical block: the only block size supported.
pub const SECTOR_SIZE: u64 = 512;
/// Partition entries in the array (the minimum the spec allows, §5.3.2:
/// 16,384 bytes must be reserved).
pub const ENTRY_COUNT: usize = 128;
/// Bytes per partition entry (§5.3.3, `SizeOfPartitionEntry`).
const ENTRY_SIZE: usize = 128;
/// Sectors of the partition entry array: 128 × 128 bytes / 512.
const ENTRY_SECTORS: u64 = (ENTRY_COUNT * ENTRY_SIZE) as u64 / SECTOR_SIZE;
/// Bytes of the header that the header CRC covers (§5.3.2, `HeaderSize`).
const HEADER_SIZE: usize = 92;
/// `Signature`: ASCII "EFI PART".
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// `Revision` 1.0.
const REVISION: u32 = 0x0001_0000;
/// Longest partition name, in UTF-16 code units (72 bytes, §5.3.3).
pub const NAME_UNITS: usize = 36;
/// First LBA a partition may use: MBR + header + 32 entry sectors.
pub const FIRST_USABLE: Lba = Lba(2 + ENTRY_SECTORS);
/// Sectors at the end of the disk taken by the backup entries and header.
pub const BACKUP_SECTORS: u64 = ENTRY_SECTORS + 1;
/// Smallest disk: primary + backup structures + one usable sector.
const MIN_SECTORS: u64 = FIRST_USABLE.0 + BACKUP_SECTORS + 1;

/// A logical block address, in 512-byte sectors from the start of the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lba(pub u64);

impl Lba {
    /// Byte offset of this block.
    pub fn byte_offset(self) -> u64 {
        self.0 * SECTOR_SIZE
    }
}

impl fmt::Display for Lba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LBA {}", self.0)
    }
}

/// Partition attribute bits (§5.3.3, table 5.8; bits 48..=63 are defined by
/// the partition type, here those of the Discoverable Partitions Spec).
pub mod attr {
    /// The firmware must preserve this partition.
    pub const REQUIRED: u64 = 1 << 0;
    /// The firmware must not produce an EFI_BLOCK_IO_PROTOCOL for it.
    pub const NO_BLOCK_IO: u64 = 1 << 1;
    /// Legacy BIOS bootable: what GPT-aware MBR boot code (syslinux's
    /// gptmbr.bin) looks for instead of an MBR active flag.
    pub const LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;
    /// Mount read-only (discoverable partitions).
    pub const READ_ONLY: u64 = 1 << 60;
    /// Grow the filesystem to the partition on first boot (systemd-growfs).
    pub const GROWFS: u64 = 1 << 59;
    /// Do not mount automatically (discoverable partitions).
    pub const NO_AUTO: u64 = 1 << 63;
}

/// One GPT partition entry (§5.3.3, 128 bytes on disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// `PartitionTypeGUID` (offset 0, 16 bytes): what the partition holds.
    pub type_guid: Guid,
    /// `UniquePartitionGUID` (offset 16, 16 bytes): this partition's identity.
    pub guid: Guid,
    /// `StartingLBA` (offset 32, 8 bytes).
    pub first_lba: Lba,
    /// `EndingLBA` (offset 40, 8 bytes), inclusive.
    pub last_lba: Lba,
    /// `Attributes` (offset 48, 8 bytes): see [`attr`].
    pub attributes: u64,
    /// `PartitionName` (offset 56, 72 bytes): UTF-16LE, at most
    /// [`NAME_UNITS`] code units, NUL-padded.
    pub name: String,
}

impl Partition {
    /// Sectors in the partition.
    pub fn sectors(&self) -> u64 {
        self.last_lba.0.saturating_sub(self.first_lba.0) + 1
    }

    fn encode(&self, out: &mut [u8]) {
        out[0..16].copy_from_slice(&self.type_guid.0);
        out[16..32].copy_from_slice(&self.guid.0);
        out[32..40].copy_from_slice(&self.first_lba.0.to_le_bytes());
        out[40..48].copy_from_slice(&self.last_lba.0.to_le_bytes());
        out[48..56].copy_from_slice(&self.attributes.to_le_bytes());
        for (i, unit) in self.name.encode_utf16().take(NAME_UNITS).enumerate() {
            out[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
    }

    /// Decodes one entry; `None` for an unused one (nil type GUID).
    fn decode(e: &[u8], index: usize, offset: u64) -> Result<Option<Partition>, GptError> {
        let guid = |r: std::ops::Range<usize>| {
            let mut g = [0u8; 16];
            g.copy_from_slice(&e[r]);
            Guid(g)
        };
        let type_guid = guid(0..16);
        if type_guid == Guid::NIL {
            return Ok(None);
        }
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16(&units).map_err(|_| GptError::BadEntry {
            index,
            offset: offset + 56,
            what: "partition name is not valid UTF-16".into(),
        })?;
        let p = Partition {
            type_guid,
            guid: guid(16..32),
            first_lba: Lba(le64(&e[32..40])),
            last_lba: Lba(le64(&e[40..48])),
            attributes: le64(&e[48..56]),
            name,
        };
        if p.last_lba < p.first_lba {
            return Err(GptError::BadEntry {
                index,
                offset: offset + 40,
                what: format!("ends at {} before it starts at {}", p.last_lba, p.first_lba),
            });
        }
        Ok(Some(p))
    }
}

/// A whole-disk partition table to write: 512-byte sectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptDisk {
    /// `DiskGUID` of the header.
    pub disk_guid: Guid,
    /// Size of the disk in bytes, a multiple of [`SECTOR_SIZE`].
    pub size_bytes: u64,
    /// Partitions, written to entries 1, 2, ... in this order.
    pub partitions: Vec<Partition>,
}

/// Errors from building or reading a GPT.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("disk size {0} bytes is not a whole number of 512-byte sectors")]
    UnalignedSize(u64),
    #[error("disk of {sectors} sectors is too small for a GPT (needs at least {MIN_SECTORS})")]
    TooSmall { sectors: u64 },
    #[error("{0} partitions: at most 128 fit the partition entry array")]
    TooManyPartitions(usize),
    #[error("partition {index} ({name:?}): {what}")]
    Partition {
        index: usize,
        name: String,
        what: String,
    },
    #[error("MBR boot code is {0} bytes: at most 440 fit")]
    BootCodeTooLong(usize),
    #[error("hybrid MBR entry {index}: {what}")]
    Hybrid { index: usize, what: String },
    #[error("invalid GUID {0:?}: expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
    BadGuid(String),
    #[error("reading GPT at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("GPT {which} header at byte {offset}: {what}")]
    BadHeader {
        which: &'static str,
        offset: u64,
        what: String,
    },
    #[error(
        "GPT {which} header at byte {offset}: CRC32 of its {size} bytes is {computed:#010x}, \
         but byte {field} stores {stored:#010x}"
    )]
    HeaderCrc {
        which: &'static str,
        offset: u64,
        size: u32,
        field: u64,
        computed: u32,
        stored: u32,
    },
    #[error(
        "GPT {which} partition entry array at byte {offset}: CRC32 is {computed:#010x}, \
         but the header stores {stored:#010x}"
    )]
    EntriesCrc {
        which: &'static str,
        offset: u64,
        computed: u32,
        stored: u32,
    },
    #[error("GPT partition entry {index} at byte {offset}: {what}")]
    BadEntry {
        index: usize,
        offset: u64,
        what: String,
    },
}

/// The GPT header (§5.3.2, table 5.5): 92 bytes at the start of its sector,
/// the rest of which is zero.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Header {
    // Signature (offset 0, 8 bytes) is SIGNATURE; Revision (8, 4) is REVISION;
    // HeaderSize (12, 4) is HEADER_SIZE; HeaderCRC32 (16, 4) is computed over
    // HeaderSize bytes with itself zeroed; Reserved (20, 4) is zero.
    /// `MyLBA` (offset 24): the LBA holding this header.
    my_lba: Lba,
    /// `AlternateLBA` (offset 32): the LBA of the other header.
    alternate_lba: Lba,
    /// `FirstUsableLBA` (offset 40).
    first_usable: Lba,
    /// `LastUsableLBA` (offset 48), inclusive.
    last_usable: Lba,
    /// `DiskGUID` (offset 56, 16 bytes).
    disk_guid: Guid,
    /// `PartitionEntryLBA` (offset 72): first sector of this copy's array.
    entries_lba: Lba,
    /// `NumberOfPartitionEntries` (offset 80, 4 bytes).
    entry_count: u32,
    /// `SizeOfPartitionEntry` (offset 84, 4 bytes): 128 × 2^n.
    entry_size: u32,
    /// `PartitionEntryArrayCRC32` (offset 88, 4 bytes).
    entries_crc: u32,
}

/// Byte offset of `HeaderCRC32` within the header.
const HEADER_CRC_OFFSET: usize = 16;

impl Header {
    fn encode(&self) -> [u8; SECTOR_SIZE as usize] {
        let mut b = [0u8; SECTOR_SIZE as usize];
        b[0..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&REVISION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        b[24..32].copy_from_slice(&self.my_lba.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.alternate_lba.0.to_le_bytes());
        b[40..48].copy_from_slice(&self.first_usable.0.to_le_bytes());
        b[48..56].copy_from_slice(&self.last_usable.0.to_le_bytes());
        b[56..72].copy_from_slice(&self.disk_guid.0);
        b[72..80].copy_from_slice(&self.entries_lba.0.to_le_bytes());
        b[80..84].copy_from_slice(&self.entry_count.to_le_bytes());
        b[84..88].copy_from_slice(&self.entry_size.to_le_bytes());
        b[88..92].copy_from_slice(&self.entries_crc.to_le_bytes());
        let crc = crc32(&b[..HEADER_SIZE]);
        b[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and CRC-checks the header in `sector`, read from `offset`.
    fn decode(sector: &[u8], which: &'static str, offset: u64) -> Result<Header, GptError> {
        let bad = |what: String| GptError::BadHeader {
            which,
            offset,
            what,
        };
        if &sector[0..8] != SIGNATURE {
            return Err(bad(format!(
                "signature {:?} is not \"EFI PART\"",
                &sector[0..8]
            )));
        }
        let size = le32(&sector[12..16]);
        if !(HEADER_SIZE as u32..=SECTOR_SIZE as u32).contains(&size) {
            return Err(bad(format!("HeaderSize {size} is outside 92..=512")));
        }
        let stored = le32(&sector[16..20]);
        let mut copy = sector[..size as usize].to_vec();
        copy[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].fill(0);
        let computed = crc32(&copy);
        if computed != stored {
            return Err(GptError::HeaderCrc {
                which,
                offset,
                size,
                field: offset + HEADER_CRC_OFFSET as u64,
                computed,
                stored,
            });
        }
        let revision = le32(&sector[8..12]);
        if revision >> 16 != 1 {
            return Err(bad(format!("unsupported revision {revision:#010x}")));
        }
        let mut disk_guid = [0u8; 16];
        disk_guid.copy_from_slice(&sector[56..72]);
        Ok(Header {
            my_lba: Lba(le64(&sector[24..32])),
            alternate_lba: Lba(le64(&sector[32..40])),
            first_usable: Lba(le64(&sector[40..48])),
            last_usable: Lba(le64(&sector[48..56])),
            disk_guid: Guid(disk_guid),
            entries_lba: Lba(le64(&sector[72..80])),
            entry_count: le32(&sector[80..84]),
            entry_size: le32(&sector[84..88]),
            entries_crc: le32(&sector[88..92]),
        })
    }
}

impl GptDisk {
    /// Sectors on the disk (`size_bytes` / 512).
    pub fn sectors(&self) -> u64 {
        self.size_bytes / SECTOR_SIZE
    }

    /// The disk's last LBA, where the backup header goes.
    pub fn last_lba(&self) -> Lba {
        Lba(self.sectors().saturating_sub(1))
    }

    /// The last LBA a partition may use: before the backup entry array.
    pub fn last_usable(&self) -> Lba {
        Lba(self.sectors().saturating_sub(1 + BACKUP_SECTORS))
    }

    /// Checks the disk size, partition bounds and names, and that no two
    /// partitions overlap. Alignment is not required.
    pub fn validate(&self) -> Result<(), GptError> {
        if !self.size_bytes.is_multiple_of(SECTOR_SIZE) {
            return Err(GptError::UnalignedSize(self.size_bytes));
        }
        if self.sectors() < MIN_SECTORS {
            return Err(GptError::TooSmall {
                sectors: self.sectors(),
            });
        }
        if self.partitions.len() > ENTRY_COUNT {
            return Err(GptError::TooManyPartitions(self.partitions.len()));
        }
        let last_usable = self.last_usable();
        for (index, p) in self.partitions.iter().enumerate() {
            let err = |what: String| GptError::Partition {
                index,
                name: p.name.clone(),
                what,
            };
            if p.type_guid == Guid::NIL {
                return Err(err("type GUID is nil (that marks an unused entry)".into()));
            }
            if p.name.encode_utf16().count() > NAME_UNITS {
                return Err(err(format!(
                    "name is longer than {NAME_UNITS} UTF-16 units"
                )));
            }
            if p.name.contains('\0') {
                return Err(err("name contains NUL".into()));
            }
            if p.last_lba < p.first_lba {
                return Err(err(format!("ends at {} before it starts", p.last_lba)));
            }
            if p.first_lba < FIRST_USABLE || p.last_lba > last_usable {
                return Err(err(format!(
                    "{}..={} is outside the usable {}..={}",
                    p.first_lba.0, p.last_lba.0, FIRST_USABLE.0, last_usable.0
                )));
            }
        }
        let mut sorted: Vec<(usize, &Partition)> = self.partitions.iter().enumerate().collect();
        sorted.sort_by_key(|(_, p)| p.first_lba);
        for pair in sorted.windows(2) {
            let ((ia, a), (ib, b)) = (pair[0], pair[1]);
            if b.first_lba <= a.last_lba {
                return Err(GptError::Partition {
                    index: ib,
                    name: b.name.clone(),
                    what: format!("overlaps partition {ia} ({:?}) at {}", a.name, b.first_lba),
                });
            }
        }
        Ok(())
    }

    /// The partition entry array: 128 entries of 128 bytes.
    fn entry_array(&self) -> Vec<u8> {
        let mut a = vec![0u8; ENTRY_COUNT * ENTRY_SIZE];
        for (p, slot) in self.partitions.iter().zip(a.chunks_exact_mut(ENTRY_SIZE)) {
            p.encode(slot);
        }
        a
    }

    fn header(&self, primary: bool, entries_crc: u32) -> Header {
        let (my, alt, entries) = if primary {
            (Lba(1), self.last_lba(), Lba(2))
        } else {
            (self.last_lba(), Lba(1), Lba(self.last_usable().0 + 1))
        };
        Header {
            my_lba: my,
            alternate_lba: alt,
            first_usable: FIRST_USABLE,
            last_usable: self.last_usable(),
            disk_guid: self.disk_guid,
            entries_lba: entries,
            entry_count: ENTRY_COUNT as u32,
            entry_size: ENTRY_SIZE as u32,
            entries_crc,
        }
    }

    /// LBA 0..=33 with a pure protective MBR: write at byte 0.
    pub fn primary(&self, mbr_boot_code: Option<&[u8]>) -> Result<Vec<u8>, GptError> {
        self.primary_with(&MbrOptions {
            boot_code: mbr_boot_code.map_or(BootCode::None, BootCode::Plain),
            ..MbrOptions::default()
        })
    }

    /// LBA 0..=33 (MBR, primary header, entry array) with the MBR described
    /// by `mbr`: write at byte 0.
    pub fn primary_with(&self, mbr: &MbrOptions<'_>) -> Result<Vec<u8>, GptError> {
        self.validate()?;
        let entries = self.entry_array();
        let mut out = mbr::protective_mbr(self, mbr)?.to_vec();
        out.extend_from_slice(&self.header(true, crc32(&entries)).encode());
        out.extend_from_slice(&entries);
        Ok(out)
    }

    /// The last 33 sectors (backup entry array, then the backup header):
    /// write at byte `size_bytes - 33 × 512`.
    pub fn backup(&self) -> Result<Vec<u8>, GptError> {
        self.validate()?;
        let mut out = self.entry_array();
        let crc = crc32(&out);
        out.extend_from_slice(&self.header(false, crc).encode());
        Ok(out)
    }

    /// Byte offset at which [`GptDisk::backup`] goes.
    pub fn backup_offset(&self) -> u64 {
        Lba(self.last_usable().0 + 1).byte_offset()
    }
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// CRC-32 as UEFI uses it (§5.3.2 refers to the ISO 3309 / ITU-T V.42 CRC:
/// reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF),
/// byte-at-a-time from a table built at compile time.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests;
