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
//! Hybrid MBRs (extra MBR entries beside the 0xEE one, [`MbrOptions`]) are
//! outside the UEFI spec but needed by some legacy-BIOS boot paths; see
//! [`MbrOptions`] for when to use them.
//!
//! Non-goals: 4 KiB-sector disks, entry arrays of another size, partition
//! alignment policy (the caller picks LBAs; 1 MiB alignment is its choice),
//! repairing a damaged table, MBR-only disks.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

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
const BACKUP_SECTORS: u64 = ENTRY_SECTORS + 1;
/// Smallest disk: primary + backup structures + one usable sector.
const MIN_SECTORS: u64 = FIRST_USABLE.0 + BACKUP_SECTORS + 1;
/// Bytes of MBR bootstrap code (§5.2.1, `BootCode`).
pub const MBR_BOOT_CODE_SIZE: usize = 440;
/// MBR partition type of the protective partition (§5.2.3).
pub const MBR_TYPE_PROTECTIVE: u8 = 0xEE;
/// MBR partition type of an EFI System Partition (§5.2.2).
pub const MBR_TYPE_EFI: u8 = 0xEF;

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

/// A GUID in its on-disk byte order (§Appendix A): the first three fields
/// little-endian, the last eight bytes as written. [`Display`](fmt::Display)
/// and [`FromStr`] use the canonical text form, which prints those fields
/// big-endian ("mixed-endian" relative to the bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID, which marks an unused partition entry.
    pub const NIL: Guid = Guid([0; 16]);
    /// EFI System Partition (§5.3.3, table 5.7).
    pub const EFI_SYSTEM: Guid = Guid::from_u128(0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B);
    /// Generic Linux filesystem data (Discoverable Partitions Specification).
    pub const LINUX_FILESYSTEM: Guid = Guid::from_u128(0x0FC63DAF_8483_4772_8E79_3D69D8477DE4);
    /// Linux root partition for x86-64 (Discoverable Partitions Specification).
    pub const LINUX_ROOT_X86_64: Guid = Guid::from_u128(0x4F68BCE3_E8CD_4DB1_96E7_FBCAF984B709);
    /// BIOS boot partition (GRUB's core.img on GPT disks booted by BIOS).
    pub const BIOS_BOOT: Guid = Guid::from_u128(0x21686148_6449_6E6F_744E_656564454649);
    /// Microsoft basic data (FAT/NTFS data partitions).
    pub const MICROSOFT_BASIC_DATA: Guid = Guid::from_u128(0xEBD0A0A2_B9E5_4433_87C0_68B6B72699C7);

    /// The GUID whose canonical text is the 32 hex digits of `v` in order.
    pub const fn from_u128(v: u128) -> Guid {
        Guid::from_text_order(v.to_be_bytes())
    }

    /// Converts the 16 bytes in text order (RFC 4122 network order) to the
    /// on-disk order: byte-swaps the 4-, 2- and 2-byte leading fields.
    const fn from_text_order(b: [u8; 16]) -> Guid {
        Guid([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ])
    }

    /// The bytes in text order (the inverse of the on-disk swap).
    fn text_order(&self) -> [u8; 16] {
        // The swap is its own inverse.
        Guid::from_text_order(self.0).0
    }

    /// A deterministic GUID for `label` within `seed` (e.g. the image digest):
    /// sha256 over a domain tag, the seed's length, the seed and the label,
    /// truncated to 16 bytes and stamped as an RFC 9562 version-8 (custom)
    /// GUID with the RFC 4122 variant, so it never collides with a random
    /// (version 4) one.
    pub fn derive(seed: &[u8], label: &str) -> Guid {
        let mut h = Sha256::new();
        h.update(b"smelt gpt guid v1\0");
        h.update((seed.len() as u64).to_le_bytes());
        h.update(seed);
        h.update(label.as_bytes());
        let digest = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b[6] = (b[6] & 0x0F) | 0x80;
        b[8] = (b[8] & 0x3F) | 0x80;
        Guid::from_text_order(b)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.text_order();
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = GptError;
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, either case.
    fn from_str(s: &str) -> Result<Guid, GptError> {
        let bad = || GptError::BadGuid(s.to_string());
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return Err(bad());
        }
        let hex: String = groups.concat();
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let v = u128::from_str_radix(&hex, 16).map_err(|_| bad())?;
        Ok(Guid::from_u128(v))
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

/// One MBR partition record (§5.2.1, table 5.2; 16 bytes on disk), for the
/// extra entries of a hybrid MBR.
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

/// What goes into LBA 0 besides the protective 0xEE entry.
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MbrOptions<'a> {
    /// Up to [`MBR_BOOT_CODE_SIZE`] bytes of x86 boot code for LBA 0 (e.g.
    /// syslinux's gptmbr.bin); the rest of the 440 bytes is zero.
    pub boot_code: Option<&'a [u8]>,
    /// Mark the 0xEE entry active (0x80).
    pub protective_bootable: bool,
    /// Extra MBR entries, written after the 0xEE one in slots 2..=4.
    pub hybrid: Vec<MbrPartition>,
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
            boot_code: mbr_boot_code,
            ..MbrOptions::default()
        })
    }

    /// LBA 0..=33 (MBR, primary header, entry array) with the MBR described
    /// by `mbr`: write at byte 0.
    pub fn primary_with(&self, mbr: &MbrOptions<'_>) -> Result<Vec<u8>, GptError> {
        self.validate()?;
        let entries = self.entry_array();
        let mut out = protective_mbr(self, mbr)?.to_vec();
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

/// One 16-byte MBR partition record (§5.2.1, table 5.2).
fn mbr_record(bootable: bool, os_type: u8, first: u32, count: u32) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[0] = if bootable { 0x80 } else { 0 };
    r[1..4].copy_from_slice(&chs(u64::from(first)));
    r[4] = os_type;
    r[5..8].copy_from_slice(&chs(u64::from(first) + u64::from(count) - 1));
    r[8..12].copy_from_slice(&first.to_le_bytes());
    r[12..16].copy_from_slice(&count.to_le_bytes());
    r
}

/// The CHS address of `lba` in the 255-head, 63-sector geometry every BIOS
/// since LBA assist uses; 0xFFFFFF when past cylinder 1023, as §5.2.3 asks.
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cyl = lba / (HEADS * SECTORS);
    if cyl > 1023 {
        return [0xFF; 3];
    }
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    [
        head as u8,
        (sector as u8) | (((cyl >> 2) & 0xC0) as u8),
        cyl as u8,
    ]
}

/// LBA 0 (§5.2.3, table 5.4): boot code, `UniqueMBRDiskSignature` (the first
/// four bytes of the disk GUID, so it is deterministic), the 0xEE record in
/// slot 1, any hybrid records, the 0xAA55 signature.
fn protective_mbr(disk: &GptDisk, opts: &MbrOptions<'_>) -> Result<[u8; 512], GptError> {
    let mut m = [0u8; 512];
    if let Some(code) = opts.boot_code {
        if code.len() > MBR_BOOT_CODE_SIZE {
            return Err(GptError::BootCodeTooLong(code.len()));
        }
        m[..code.len()].copy_from_slice(code);
    }
    m[440..444].copy_from_slice(&disk.disk_guid.0[..4]);
    let hybrid = hybrid_records(disk, &opts.hybrid)?;
    // Without hybrid entries, 0xEE covers the whole disk (capped at 2^32-1
    // sectors); with them, LBA 1 up to the first one.
    let ee_end = opts.hybrid.iter().map(|h| h.first_lba.0).min();
    let ee_count = match ee_end {
        Some(first) => first - 1,
        None => (disk.sectors() - 1).min(u64::from(u32::MAX)),
    };
    let ee = mbr_record(
        opts.protective_bootable,
        MBR_TYPE_PROTECTIVE,
        1,
        ee_count as u32,
    );
    m[446..462].copy_from_slice(&ee);
    for (i, r) in hybrid.iter().enumerate() {
        m[462 + 16 * i..478 + 16 * i].copy_from_slice(r);
    }
    m[510] = 0x55;
    m[511] = 0xAA;
    Ok(m)
}

/// Checks and encodes hybrid entries: at most three, inside the usable area
/// and 32-bit LBAs, not overlapping each other.
fn hybrid_records(disk: &GptDisk, entries: &[MbrPartition]) -> Result<Vec<[u8; 16]>, GptError> {
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
        if h.first_lba < FIRST_USABLE || h.last_lba > disk.last_usable() || h.last_lba < h.first_lba
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
        let count = (h.last_lba.0 - h.first_lba.0 + 1) as u32;
        out.push(mbr_record(
            h.bootable,
            h.os_type,
            h.first_lba.0 as u32,
            count,
        ));
    }
    Ok(out)
}

/// Reads and checks a GPT: the protective MBR's signature and 0xEE entry,
/// then both headers and entry arrays with their CRCs (§5.3.2 "the
/// following tests must be performed"). Returns the primary copy's table;
/// the disk size is the reader's length.
pub fn read<R: Read + Seek>(disk: &mut R) -> Result<GptDisk, GptError> {
    let size_bytes = disk
        .seek(SeekFrom::End(0))
        .map_err(|source| GptError::Io { offset: 0, source })?;
    let sectors = size_bytes / SECTOR_SIZE;
    if sectors < MIN_SECTORS {
        return Err(GptError::TooSmall { sectors });
    }
    let mbr = read_at(disk, 0, SECTOR_SIZE as usize)?;
    check_mbr(&mbr)?;
    let sector = read_at(disk, SECTOR_SIZE, SECTOR_SIZE as usize)?;
    let primary = Header::decode(&sector, "primary", SECTOR_SIZE)?;
    check_header(&primary, "primary", Lba(1), sectors)?;
    let entries = read_entries(disk, &primary, "primary")?;
    let backup_lba = primary.alternate_lba;
    let sector = read_at(disk, backup_lba.byte_offset(), SECTOR_SIZE as usize)?;
    let backup = Header::decode(&sector, "backup", backup_lba.byte_offset())?;
    check_header(&backup, "backup", backup_lba, sectors)?;
    read_entries(disk, &backup, "backup")?;
    if backup.entries_crc != primary.entries_crc || backup.disk_guid != primary.disk_guid {
        return Err(GptError::BadHeader {
            which: "backup",
            offset: backup_lba.byte_offset(),
            what: "disk GUID or entry array differs from the primary's".into(),
        });
    }
    let mut partitions = Vec::new();
    let entry_size = primary.entry_size as usize;
    for (index, e) in entries.chunks_exact(entry_size).enumerate() {
        let offset = primary.entries_lba.byte_offset() + (index * entry_size) as u64;
        if let Some(p) = Partition::decode(&e[..ENTRY_SIZE], index, offset)? {
            if p.first_lba < primary.first_usable || p.last_lba > primary.last_usable {
                return Err(GptError::BadEntry {
                    index,
                    offset: offset + 32,
                    what: format!(
                        "{}..={} is outside the usable area",
                        p.first_lba.0, p.last_lba.0
                    ),
                });
            }
            partitions.push(p);
        }
    }
    Ok(GptDisk {
        disk_guid: primary.disk_guid,
        size_bytes,
        partitions,
    })
}

fn check_mbr(mbr: &[u8]) -> Result<(), GptError> {
    let bad = |offset: u64, what: &str| GptError::BadHeader {
        which: "protective MBR",
        offset,
        what: what.into(),
    };
    if mbr[510..512] != [0x55, 0xAA] {
        return Err(bad(510, "boot signature is not 0x55 0xAA"));
    }
    let has_ee = (0..4).any(|i| {
        let r = &mbr[446 + 16 * i..462 + 16 * i];
        r[4] == MBR_TYPE_PROTECTIVE && le32(&r[8..12]) == 1
    });
    if !has_ee {
        return Err(bad(446, "no 0xEE partition starting at LBA 1"));
    }
    Ok(())
}

/// The checks of §5.3.2 beyond the CRC: the header is where it says, the
/// usable range and entry array are on the disk and sane.
fn check_header(h: &Header, which: &'static str, at: Lba, sectors: u64) -> Result<(), GptError> {
    let bad = |what: String| GptError::BadHeader {
        which,
        offset: at.byte_offset(),
        what,
    };
    if h.my_lba != at {
        return Err(bad(format!(
            "MyLBA is {}, but it was read from {at}",
            h.my_lba.0
        )));
    }
    if h.alternate_lba.0 >= sectors || h.last_usable.0 >= sectors || h.entries_lba.0 >= sectors {
        return Err(bad(format!(
            "an LBA field points past the disk's {sectors} sectors"
        )));
    }
    if h.first_usable > h.last_usable {
        return Err(bad("FirstUsableLBA is after LastUsableLBA".into()));
    }
    let size = h.entry_size;
    if size < ENTRY_SIZE as u32 || !size.is_power_of_two() {
        return Err(bad(format!("SizeOfPartitionEntry {size} is not 128 × 2^n")));
    }
    // A cap checked before allocating: 1 MiB is far above any real table.
    let bytes = u64::from(h.entry_count) * u64::from(size);
    if bytes > 1 << 20 {
        return Err(bad(format!(
            "partition entry array of {bytes} bytes is too big"
        )));
    }
    if h.entries_lba.0 + bytes.div_ceil(SECTOR_SIZE) > sectors {
        return Err(bad(
            "partition entry array runs past the end of the disk".into()
        ));
    }
    Ok(())
}

fn read_entries<R: Read + Seek>(
    disk: &mut R,
    h: &Header,
    which: &'static str,
) -> Result<Vec<u8>, GptError> {
    let offset = h.entries_lba.byte_offset();
    let len = h.entry_count as usize * h.entry_size as usize;
    let entries = read_at(disk, offset, len)?;
    let computed = crc32(&entries);
    if computed != h.entries_crc {
        return Err(GptError::EntriesCrc {
            which,
            offset,
            computed,
            stored: h.entries_crc,
        });
    }
    Ok(entries)
}

fn read_at<R: Read + Seek>(disk: &mut R, offset: u64, len: usize) -> Result<Vec<u8>, GptError> {
    let io = |source| GptError::Io { offset, source };
    disk.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = vec![0u8; len];
    disk.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
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
mod tests {
    use std::io::{Cursor, Seek, SeekFrom, Write};
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::digest::Digest;
    use crate::tree::testutil::run;

    const MIB: u64 = 1 << 20;

    fn sample() -> GptDisk {
        let seed = b"sha256:test-image";
        GptDisk {
            disk_guid: Guid::derive(seed, "disk"),
            size_bytes: 64 * MIB,
            partitions: vec![
                Partition {
                    type_guid: Guid::EFI_SYSTEM,
                    guid: Guid::derive(seed, "esp"),
                    first_lba: Lba(2048),
                    last_lba: Lba(2048 + 16 * 2048 - 1),
                    attributes: attr::REQUIRED | attr::LEGACY_BIOS_BOOTABLE,
                    name: "EFI System".into(),
                },
                Partition {
                    type_guid: Guid::LINUX_ROOT_X86_64,
                    guid: Guid::derive(seed, "root"),
                    first_lba: Lba(34816),
                    last_lba: Lba(100_000),
                    attributes: attr::READ_ONLY | attr::NO_AUTO,
                    name: "root-x86-64 ünïcode".into(),
                },
                Partition {
                    type_guid: Guid::BIOS_BOOT,
                    guid: Guid::derive(seed, "bios"),
                    first_lba: Lba(34),
                    last_lba: Lba(2047),
                    attributes: 0,
                    name: "x".repeat(NAME_UNITS),
                },
            ],
        }
    }

    /// A sparse disk file: primary at 0, backup at the end.
    fn write_disk(disk: &GptDisk, mbr: &MbrOptions<'_>, path: &Path) {
        let mut f = std::fs::File::create(path).unwrap();
        f.set_len(disk.size_bytes).unwrap();
        f.write_all(&disk.primary_with(mbr).unwrap()).unwrap();
        f.seek(SeekFrom::Start(disk.backup_offset())).unwrap();
        f.write_all(&disk.backup().unwrap()).unwrap();
    }

    fn image(disk: &GptDisk) -> Vec<u8> {
        let mut img = vec![0u8; disk.size_bytes as usize];
        let primary = disk.primary(None).unwrap();
        img[..primary.len()].copy_from_slice(&primary);
        let off = disk.backup_offset() as usize;
        img[off..].copy_from_slice(&disk.backup().unwrap());
        img
    }

    #[test]
    fn guid_text_form_and_constants() {
        let g: Guid = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709".parse().unwrap();
        assert_eq!(g, Guid::LINUX_ROOT_X86_64);
        assert_eq!(g.to_string(), "4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
        // On disk the first three fields are little-endian.
        assert_eq!(&g.0[..8], &[0xE3, 0xBC, 0x68, 0x4F, 0xCD, 0xE8, 0xB1, 0x4D]);
        assert_eq!(&g.0[8..], &[0x96, 0xE7, 0xFB, 0xCA, 0xF9, 0x84, 0xB7, 0x09]);
        let esp = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
        assert_eq!(esp.parse::<Guid>().unwrap(), Guid::EFI_SYSTEM);
        for bad in [
            "",
            "c12a7328f81f11d2ba4b00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93g",
        ] {
            assert!(
                matches!(bad.parse::<Guid>(), Err(GptError::BadGuid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn derived_guids_are_stable_versioned_and_distinct() {
        let a = Guid::derive(b"seed", "esp");
        assert_eq!(a, Guid::derive(b"seed", "esp"));
        assert_ne!(a, Guid::derive(b"seed", "root"));
        assert_ne!(a, Guid::derive(b"seed2", "esp"));
        // Length-prefixed seed: ("se", "edesp") is not ("seed", "esp").
        assert_ne!(a, Guid::derive(b"se", "edesp"));
        let text = a.to_string();
        assert_eq!(&text[14..15], "8", "version 8: {text}");
        assert!(
            matches!(&text[19..20], "8" | "9" | "a" | "b"),
            "variant: {text}"
        );
        assert_eq!(text, "13f1c6bc-d371-8df6-a1d0-108cf70f533b");
    }

    #[test]
    fn chs_addresses() {
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(1), [0, 2, 0]);
        assert_eq!(chs(63), [1, 1, 0]);
        // Cylinder 256: its top two bits go into the sector byte.
        assert_eq!(chs(256 * 255 * 63), [0, 0x41, 0]);
        assert_eq!(chs(1024 * 255 * 63 - 1), [254, 0xFF, 0xFF]);
        assert_eq!(chs(1024 * 255 * 63), [0xFF; 3]);
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn sgdisk_and_sfdisk_read_what_we_wrote() {
        let disk = sample();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("disk.img");
        write_disk(&disk, &MbrOptions::default(), &path);
        let verify = run(Command::new("sgdisk").arg("-v").arg(&path));
        assert!(verify.contains("No problems found"), "{verify}");
        let print = run(Command::new("sgdisk").arg("-p").arg(&path));
        assert!(print.contains(&format!(
            "Disk identifier (GUID): {}",
            upper(disk.disk_guid)
        )));
        assert!(print.contains("First usable sector is 34, last usable sector is 131038"));
        let json = run(Command::new("sfdisk").arg("-J").arg(&path));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let t = &v["partitiontable"];
        assert_eq!(t["label"], "gpt");
        assert_eq!(t["id"], upper(disk.disk_guid));
        assert_eq!(
            (t["firstlba"].as_u64(), t["lastlba"].as_u64()),
            (Some(34), Some(131038))
        );
        let parts = t["partitions"].as_array().unwrap();
        let attrs = ["RequiredPartition LegacyBIOSBootable", "GUID:60,63", ""];
        for ((p, j), attrs) in disk.partitions.iter().zip(parts).zip(attrs) {
            assert_eq!(j["start"].as_u64(), Some(p.first_lba.0));
            assert_eq!(j["size"].as_u64(), Some(p.sectors()));
            assert_eq!(j["type"], upper(p.type_guid));
            assert_eq!(j["uuid"], upper(p.guid));
            assert_eq!(j["name"].as_str().unwrap_or(""), p.name);
            assert_eq!(j["attrs"].as_str().unwrap_or(""), attrs);
        }
        let info = run(Command::new("sgdisk").arg("-i2").arg(&path));
        assert!(info.contains("Attribute flags: 9000000000000000"), "{info}");
        assert!(
            info.contains("Partition name: 'root-x86-64 ünïcode'"),
            "{info}"
        );
    }

    fn upper(g: Guid) -> String {
        g.to_string().to_uppercase()
    }

    #[test]
    fn read_round_trips_and_reads_sgdisk_tables() {
        let disk = sample();
        assert_eq!(read(&mut Cursor::new(image(&disk))).unwrap(), disk);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sg.img");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(8 * MIB)
            .unwrap();
        run(Command::new("sgdisk")
            .args([
                "-U",
                "11111111-2222-3333-4444-555555555555",
                "-n1:2048:+1M",
                "-t1:ef00",
            ])
            .args([
                "-u1:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                "-c1:ESP",
                "-A1:set:2",
            ])
            .args(["-n2:0:0", "-t2:8304", "-c2:root"])
            .arg(&path));
        let theirs = read(&mut std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(
            theirs.disk_guid.to_string(),
            "11111111-2222-3333-4444-555555555555"
        );
        assert_eq!(theirs.size_bytes, 8 * MIB);
        let esp = &theirs.partitions[0];
        assert_eq!(
            (esp.type_guid, esp.name.as_str()),
            (Guid::EFI_SYSTEM, "ESP")
        );
        assert_eq!(esp.guid.to_string(), "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
        assert_eq!(
            (esp.first_lba, esp.last_lba, esp.attributes),
            (Lba(2048), Lba(4095), 4)
        );
        let root = &theirs.partitions[1];
        assert_eq!(
            (root.type_guid, root.first_lba, root.last_lba),
            (Guid::LINUX_ROOT_X86_64, Lba(4096), Lba(16350))
        );
    }

    #[test]
    fn corrupt_header_is_a_crc_error_naming_the_offset() {
        let disk = sample();
        let mut img = image(&disk);
        img[512 + 60] ^= 1; // inside DiskGUID
        let err = read(&mut Cursor::new(&img)).unwrap_err();
        assert!(
            matches!(
                err,
                GptError::HeaderCrc {
                    which: "primary",
                    offset: 512,
                    field: 528,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("byte 528"), "{err}");
        let mut img = image(&disk);
        img[1024 + 130] ^= 1; // entry 1's type GUID
        let err = read(&mut Cursor::new(&img)).unwrap_err();
        assert!(
            matches!(
                err,
                GptError::EntriesCrc {
                    which: "primary",
                    offset: 1024,
                    ..
                }
            ),
            "{err}"
        );
        let mut img = image(&disk);
        let last = img.len() - 512;
        img[last + 40] ^= 1;
        let err = read(&mut Cursor::new(&img)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("GPT backup header at byte {last}")),
            "{err}"
        );
        let mut img = image(&disk);
        img[510] = 0;
        assert!(
            read(&mut Cursor::new(&img))
                .unwrap_err()
                .to_string()
                .contains("byte 510")
        );
        let err = read(&mut Cursor::new(&img[..4096])).unwrap_err();
        assert!(matches!(err, GptError::TooSmall { sectors: 8 }), "{err}");
    }

    #[test]
    fn no_panic_on_truncated_or_flipped_tables() {
        let img = image(&sample());
        let head = &img[..34 * 512];
        for len in [0, 511, 512, 1023, 1024, 17407, 34 * 512] {
            let mut short = head[..len].to_vec();
            short.resize(100 * 512, 0);
            assert!(read(&mut Cursor::new(&short)).is_err(), "{len}");
        }
        let tiny = GptDisk {
            size_bytes: 128 * 512,
            partitions: vec![Partition {
                first_lba: Lba(34),
                last_lba: Lba(94),
                ..sample().partitions[0].clone()
            }],
            ..sample()
        };
        let small = image(&tiny);
        assert_eq!(read(&mut Cursor::new(&small)).unwrap(), tiny);
        // Every byte of the MBR and both headers, a sample of the arrays.
        let headers = (0..1024).chain(small.len() - 512..small.len());
        for at in headers.chain((1024..small.len()).step_by(61)) {
            let mut b = small.clone();
            b[at] ^= 0x41;
            let _ = read(&mut Cursor::new(&b));
        }
    }

    #[test]
    fn validate_rejects_bad_tables() {
        let check = |edit: &dyn Fn(&mut GptDisk), want: &str| {
            let mut d = sample();
            edit(&mut d);
            let err = d.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
            assert!(d.primary(None).is_err() && d.backup().is_err());
        };
        check(&|d| d.size_bytes += 1, "not a whole number");
        check(&|d| d.size_bytes = 512 * 60, "too small");
        check(
            &|d| d.partitions[1].first_lba = Lba(30000),
            "overlaps partition 0",
        );
        check(
            &|d| d.partitions[2].first_lba = Lba(33),
            "outside the usable 34..=131038",
        );
        check(
            &|d| d.partitions[1].last_lba = Lba(131039),
            "outside the usable",
        );
        check(&|d| d.partitions[1].last_lba = Lba(10), "before it starts");
        check(&|d| d.partitions[0].name = "y".repeat(37), "longer than 36");
        check(&|d| d.partitions[0].type_guid = Guid::NIL, "nil");
        check(
            &|d| d.partitions = vec![d.partitions[2].clone(); 129],
            "at most 128",
        );
        let long = [0u8; 441];
        assert!(matches!(
            sample().primary(Some(&long)),
            Err(GptError::BootCodeTooLong(441))
        ));
    }

    #[test]
    fn layout_and_protective_mbr() {
        let disk = sample();
        let code = [0xEBu8, 0x3C, 0x90];
        let p = disk.primary(Some(&code)).unwrap();
        assert_eq!(p.len(), 34 * 512);
        assert_eq!(disk.backup().unwrap().len(), 33 * 512);
        assert_eq!(disk.backup_offset(), disk.size_bytes - 33 * 512);
        assert_eq!(&p[..3], &code);
        assert_eq!(&p[440..444], &disk.disk_guid.0[..4]);
        // 0xEE from LBA 1 over the whole disk; CHS 0x000200 start (§5.2.3).
        let ee = &p[446..462];
        assert_eq!(&ee[..5], &[0, 0, 2, 0, 0xEE]);
        assert_eq!(ee[5..8], chs(disk.sectors() - 1));
        assert_eq!(le32(&ee[8..12]), 1);
        assert_eq!(u64::from(le32(&ee[12..16])), disk.sectors() - 1);
        assert!(p[462..510].iter().all(|&b| b == 0));
        assert_eq!(&p[510..512], &[0x55, 0xAA]);
        assert_eq!(&p[512..520], b"EFI PART");
    }

    #[test]
    fn hybrid_mbr_entries_and_active_flag() {
        let disk = sample();
        let mbr = MbrOptions {
            boot_code: None,
            protective_bootable: false,
            hybrid: vec![MbrPartition {
                bootable: true,
                os_type: MBR_TYPE_EFI,
                first_lba: Lba(2048),
                last_lba: Lba(34815),
            }],
        };
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hybrid.img");
        write_disk(&disk, &mbr, &path);
        let p = std::fs::read(&path).unwrap();
        assert_eq!(&p[446..462], &mbr_record(false, 0xEE, 1, 2047));
        assert_eq!(p[462], 0x80);
        assert_eq!(p[466], 0xEF);
        assert_eq!((le32(&p[470..474]), le32(&p[474..478])), (2048, 32768));
        let verify = run(Command::new("sgdisk").arg("-v").arg(&path));
        assert!(verify.contains("No problems found"), "{verify}");
        // util-linux reads the MBR view of a hybrid disk with -t dos.
        let dos = run(Command::new("sfdisk")
            .args(["-J", "--label-nested", "dos"])
            .arg(&path));
        let v: serde_json::Value = serde_json::from_str(&dos).unwrap();
        let parts = &v["partitiontable"]["partitions"];
        assert_eq!(parts[1]["type"], "ef");
        assert_eq!(parts[1]["bootable"], true);
        assert_eq!(
            read(&mut std::fs::File::open(&path).unwrap()).unwrap(),
            disk
        );
        let active = MbrOptions {
            protective_bootable: true,
            ..MbrOptions::default()
        };
        assert_eq!(disk.primary_with(&active).unwrap()[446], 0x80);
        let overlapping = MbrOptions {
            hybrid: vec![mbr.hybrid[0].clone(), mbr.hybrid[0].clone()],
            ..MbrOptions::default()
        };
        let err = disk.primary_with(&overlapping).unwrap_err();
        assert!(err.to_string().contains("overlaps hybrid entry 0"), "{err}");
    }

    #[test]
    fn output_is_deterministic() {
        let a = image(&sample());
        assert_eq!(a, image(&sample()));
        assert_eq!(
            Digest::of(&a).to_string(),
            "sha256:00c2e6b3d58e0ba1a644ae535e98acf2d621e358e71b9a7fe947056afb92b8c1"
        );
    }
}
