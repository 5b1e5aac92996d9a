//! The slot index: one 512-byte sector at byte [`INDEX_OFFSET`] of a disk
//! or ISO image that says where its config slots are (docs/slots.md, "The slot
//! index"). It is written by the build and never changes afterwards; it
//! lets `smelt inject` recognise an artifact smelt wrote and rebuild the
//! pristine slot byte for byte, and lets the init find the slot on a device
//! with no partition table view (an ISO on /dev/sr0).
//!
//! Layout, all integers little-endian:
//!
//! ```text
//!   0    8  magic "SMELTSLT"
//!   8    4  version u32 = 1
//!  12    4  count u32 (1..=4)
//!  16   64  entry 0, then entry 1 ...
//!           +0  16 kind, ASCII NUL-padded: "nocloud-fat"
//!           +16  8 offset u64: byte offset of the slot in the image
//!           +24  8 length u64: bytes of the slot
//!           +32  4 FAT volume id u32
//!           +36  8 mtime i64 (SOURCE_DATE_EPOCH of the build)
//!           +44 20 zero
//! 508    4  crc32 (IEEE, as GPT) of bytes 0..508
//! ```
//!
//! Checks, in order: magic, version, count, crc, then per entry the kind,
//! zero padding, slot bounds (length a multiple of 1 MiB from 1 MiB to
//! 256 MiB, offset 512-aligned and past the index, no overflow) and no two
//! slots overlapping. Unused entry space must be zero.

use crate::formats::gpt::crc32;

/// Byte offset of the index in the image: inside the 32 KiB ISO system area,
/// after the primary GPT entries (which end at 17408).
pub const INDEX_OFFSET: u64 = 24576;
/// Bytes of the index.
pub const INDEX_SIZE: usize = 512;
pub const MAGIC: &[u8; 8] = b"SMELTSLT";
pub const VERSION: u32 = 1;
/// Entries an index holds at most.
pub const MAX_ENTRIES: usize = 4;
/// Bytes per entry.
const ENTRY_SIZE: usize = 64;
const ENTRIES_AT: usize = 16;
const CRC_AT: usize = 508;
/// The kind of a NoCloud FAT slot.
pub const KIND_NOCLOUD_FAT: &str = "nocloud-fat";
/// Slot sizes: whole MiB from 1 MiB to 256 MiB.
pub const MIB: u64 = 1 << 20;
pub const MIN_SLOT: u64 = MIB;
pub const MAX_SLOT: u64 = 256 * MIB;

/// A byte range of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub length: u64,
}

impl Region {
    /// One past the last byte; `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.length)
    }
    pub fn overlaps(&self, other: &Region) -> bool {
        match (self.end(), other.end()) {
            (Some(a), Some(b)) => self.offset < b && other.offset < a,
            _ => true,
        }
    }
}

/// One slot: where it is and what its pristine FAT is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotEntry {
    /// Always [`KIND_NOCLOUD_FAT`] in version 1.
    pub kind: String,
    pub region: Region,
    /// The FAT's `BS_VolID`.
    pub volume_id: u32,
    /// Every FAT timestamp (seconds since the Unix epoch).
    pub mtime: i64,
}

impl SlotEntry {
    /// A NoCloud FAT slot of `length` bytes at `offset`.
    pub fn nocloud(offset: u64, length: u64, volume_id: u32, mtime: i64) -> SlotEntry {
        SlotEntry {
            kind: KIND_NOCLOUD_FAT.into(),
            region: Region { offset, length },
            volume_id,
            mtime,
        }
    }
}

/// A FAT volume id derived from `seed` (say the build's root digest and
/// the artifact name): it changes with the build, never between identical
/// builds. The first four bytes of sha256("smelt CIDATA\0" || seed).
pub fn volume_id(seed: &[u8]) -> u32 {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"smelt CIDATA\0");
    h.update(seed);
    let d = h.finalize();
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// The index: 1 to [`MAX_ENTRIES`] slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotIndex {
    pub entries: Vec<SlotEntry>,
}

/// Errors from [`SlotIndex::parse`] and [`SlotIndex::to_bytes`]; offsets
/// are bytes from the start of the index.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("slot index is {0} bytes, expected 512")]
    Size(usize),
    #[error("no slot index: bytes 0..8 are {0:?}, not \"SMELTSLT\"")]
    Magic(String),
    #[error("slot index byte {offset}: {what}")]
    Bad { offset: usize, what: String },
    #[error("slot index byte 508: crc32 {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
}

fn bad(offset: usize, what: impl Into<String>) -> IndexError {
    IndexError::Bad {
        offset,
        what: what.into(),
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl SlotIndex {
    /// Checks the entries as [`SlotIndex::parse`] would.
    pub fn validate(&self) -> Result<(), IndexError> {
        let n = self.entries.len();
        if !(1..=MAX_ENTRIES).contains(&n) {
            return Err(bad(12, format!("count {n}, expected 1..=4")));
        }
        for (i, e) in self.entries.iter().enumerate() {
            let at = ENTRIES_AT + i * ENTRY_SIZE;
            if e.kind != KIND_NOCLOUD_FAT {
                return Err(bad(
                    at,
                    format!("slot kind {:?}, expected {KIND_NOCLOUD_FAT:?}", e.kind),
                ));
            }
            let Region { offset, length } = e.region;
            if length % MIB != 0 || !(MIN_SLOT..=MAX_SLOT).contains(&length) {
                return Err(bad(
                    at + 24,
                    format!("slot length {length} is not a whole number of MiB from 1 to 256"),
                ));
            }
            if offset % 512 != 0
                || offset < INDEX_OFFSET + INDEX_SIZE as u64
                || e.region.end().is_none()
            {
                return Err(bad(
                    at + 16,
                    format!("slot offset {offset} is not 512-aligned past the index"),
                ));
            }
            if let Some(j) = self.entries[..i]
                .iter()
                .position(|o| o.region.overlaps(&e.region))
            {
                return Err(bad(at + 16, format!("slot {i} overlaps slot {j}")));
            }
        }
        Ok(())
    }

    /// The 512 bytes of the index.
    pub fn to_bytes(&self) -> Result<[u8; INDEX_SIZE], IndexError> {
        self.validate()?;
        let mut b = [0u8; INDEX_SIZE];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (i, e) in self.entries.iter().enumerate() {
            let at = ENTRIES_AT + i * ENTRY_SIZE;
            b[at..at + e.kind.len()].copy_from_slice(e.kind.as_bytes());
            b[at + 16..at + 24].copy_from_slice(&e.region.offset.to_le_bytes());
            b[at + 24..at + 32].copy_from_slice(&e.region.length.to_le_bytes());
            b[at + 32..at + 36].copy_from_slice(&e.volume_id.to_le_bytes());
            b[at + 36..at + 44].copy_from_slice(&e.mtime.to_le_bytes());
        }
        let crc = crc32(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Parses and checks 512 bytes read at [`INDEX_OFFSET`].
    pub fn parse(b: &[u8]) -> Result<SlotIndex, IndexError> {
        if b.len() != INDEX_SIZE {
            return Err(IndexError::Size(b.len()));
        }
        if &b[..8] != MAGIC {
            return Err(IndexError::Magic(
                String::from_utf8_lossy(&b[..8]).into_owned(),
            ));
        }
        let version = le32(b, 8);
        if version != VERSION {
            return Err(bad(8, format!("version {version}, this smelt reads 1")));
        }
        let count = le32(b, 12) as usize;
        if !(1..=MAX_ENTRIES).contains(&count) {
            return Err(bad(12, format!("count {count}, expected 1..=4")));
        }
        let (stored, computed) = (le32(b, CRC_AT), crc32(&b[..CRC_AT]));
        if stored != computed {
            return Err(IndexError::Crc { stored, computed });
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let at = ENTRIES_AT + i * ENTRY_SIZE;
            let kind_bytes = &b[at..at + 16];
            let len = kind_bytes.iter().position(|&c| c == 0).unwrap_or(16);
            if kind_bytes[len..].iter().any(|&c| c != 0) || !kind_bytes[..len].is_ascii() {
                return Err(bad(at, "slot kind is not NUL-padded ASCII"));
            }
            if let Some(z) = b[at + 44..at + 64].iter().position(|&c| c != 0) {
                return Err(bad(at + 44 + z, "reserved entry byte is not zero"));
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&b[at + 36..at + 44]);
            entries.push(SlotEntry {
                kind: String::from_utf8_lossy(&kind_bytes[..len]).into_owned(),
                region: Region {
                    offset: le64(b, at + 16),
                    length: le64(b, at + 24),
                },
                volume_id: le32(b, at + 32),
                mtime: i64::from_le_bytes(t),
            });
        }
        let end = ENTRIES_AT + count * ENTRY_SIZE;
        if let Some(z) = b[end..CRC_AT].iter().position(|&c| c != 0) {
            return Err(bad(end + z, "byte past the last entry is not zero"));
        }
        let index = SlotIndex { entries };
        index.validate()?;
        Ok(index)
    }

    /// The first NoCloud FAT slot.
    pub fn nocloud(&self) -> Option<&SlotEntry> {
        self.entries.iter().find(|e| e.kind == KIND_NOCLOUD_FAT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> SlotIndex {
        SlotIndex {
            entries: vec![SlotEntry::nocloud(
                32 * MIB,
                4 * MIB,
                0xC1DA_7A00,
                1_700_000_000,
            )],
        }
    }

    /// Flips byte `at` and fixes the crc, so the check after it is reached.
    fn flipped(at: usize, crc: bool) -> Result<SlotIndex, IndexError> {
        let mut b = index().to_bytes().unwrap();
        b[at] ^= 0x40;
        if crc {
            let c = crc32(&b[..CRC_AT]);
            b[CRC_AT..].copy_from_slice(&c.to_le_bytes());
        }
        SlotIndex::parse(&b)
    }

    #[test]
    fn volume_id_is_derived() {
        assert_eq!(volume_id(b"a"), volume_id(b"a"));
        assert_ne!(volume_id(b"a"), volume_id(b"b"));
    }

    #[test]
    fn round_trip_and_layout() {
        let b = index().to_bytes().unwrap();
        assert_eq!(&b[..8], b"SMELTSLT");
        assert_eq!(&b[8..16], &[1, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[16..28], b"nocloud-fat\0");
        assert_eq!(le64(&b, 32), 32 * MIB);
        assert_eq!(le64(&b, 40), 4 * MIB);
        assert_eq!(le32(&b, 48), 0xC1DA_7A00);
        assert_eq!(SlotIndex::parse(&b).unwrap(), index());
    }

    #[test]
    fn every_byte_flip_is_caught() {
        for at in 0..INDEX_SIZE {
            assert!(flipped(at, false).is_err(), "flip at {at} accepted");
        }
    }

    #[test]
    fn byte_flips_name_the_offset() {
        let e = |at, crc| flipped(at, crc).unwrap_err().to_string();
        assert_eq!(
            e(0, false),
            "no slot index: bytes 0..8 are \"\\u{13}MELTSLT\", not \"SMELTSLT\""
        );
        assert_eq!(
            e(8, false),
            "slot index byte 8: version 65, this smelt reads 1"
        );
        assert_eq!(e(12, false), "slot index byte 12: count 65, expected 1..=4");
        assert!(
            e(100, false).starts_with("slot index byte 508: crc32 0x"),
            "{}",
            e(100, false)
        );
        assert_eq!(
            e(16, true),
            "slot index byte 16: slot kind \".ocloud-fat\", expected \"nocloud-fat\""
        );
        assert_eq!(
            e(30, true),
            "slot index byte 16: slot kind is not NUL-padded ASCII"
        );
        assert_eq!(
            e(60, true),
            "slot index byte 60: reserved entry byte is not zero"
        );
        assert_eq!(
            e(80, true),
            "slot index byte 80: byte past the last entry is not zero"
        );
        assert_eq!(
            e(32, true),
            "slot index byte 32: slot offset 33554496 is not 512-aligned past the index"
        );
        assert!(
            e(43, true).starts_with("slot index byte 40: slot length "),
            "{}",
            e(43, true)
        );
        assert_eq!(SlotIndex::parse(&[0; 100]), Err(IndexError::Size(100)));
    }

    #[test]
    fn bad_entries_refused_when_writing() {
        let mut i = index();
        i.entries.push(SlotEntry::nocloud(34 * MIB, MIB, 1, 0));
        assert_eq!(
            i.to_bytes().unwrap_err().to_string(),
            "slot index byte 96: slot 1 overlaps slot 0"
        );
        i.entries[1].region.offset = 4096;
        assert!(i.to_bytes().is_err());
        i.entries[1].region = Region {
            offset: 40 * MIB,
            length: 3 * MIB + 1,
        };
        assert!(i.to_bytes().is_err());
        assert!(SlotIndex { entries: vec![] }.to_bytes().is_err());
    }
}
