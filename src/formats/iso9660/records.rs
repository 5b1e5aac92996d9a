//! ECMA-119 (4th edition, = ISO 9660) on-disk structures: volume
//! descriptors (§8), directory records (§9.1), path table records (§9.4) and
//! the two date formats (§8.4.26.1, §9.1.5).

use super::rrip::both32;
use crate::formats::fat::dir::civil_utc;

/// Bytes per logical sector (and logical block): ECMA-119 §6.1.2 allows
/// others, but CD media and every reader use 2048.
pub const SECTOR: u32 = 2048;
/// Sectors 0-15 are the System Area (§6.2.1); descriptors start at 16.
pub const SYSTEM_AREA_SECTORS: u32 = 16;
/// Fixed part of a directory record, before the file identifier (§9.1).
pub const DIR_RECORD_HEADER: usize = 33;
/// A directory record's length is one byte, and must be even (§9.1.1).
pub const MAX_DIR_RECORD: usize = 254;
/// `File Flags` bits (§9.1.6).
pub const FLAG_DIRECTORY: u8 = 0x02;
const STANDARD_ID: &[u8; 5] = b"CD001";

/// A 2048-byte ISO sector number (a logical block address, §6.1.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lba(pub u32);

impl Lba {
    /// The byte offset of the sector.
    pub fn offset(self) -> u64 {
        u64::from(self.0) * u64::from(SECTOR)
    }

    /// The same place in 512-byte sectors (the units of MBR, GPT and El
    /// Torito sector counts).
    pub fn sector512(self) -> u64 {
        u64::from(self.0) * 4
    }
}

/// Sectors needed for `bytes`.
pub fn sectors(bytes: u64) -> u64 {
    bytes.div_ceil(u64::from(SECTOR))
}

fn both16(v: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

/// The 7-byte recording date of directory records (§9.1.5): years since
/// 1900, month, day, hour, minute, second, GMT offset (always 0: UTC).
/// Years outside 1900-2155 are clamped to the first or last second.
pub fn record_date(t: i64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = civil_utc(t);
    match y {
        ..1900 => [0, 1, 1, 0, 0, 0, 0],
        2156.. => [255, 12, 31, 23, 59, 59, 0],
        _ => [
            (y - 1900) as u8,
            mo as u8,
            d as u8,
            h as u8,
            mi as u8,
            s as u8,
            0,
        ],
    }
}

/// The 17-byte volume descriptor date (§8.4.26.1): "YYYYMMDDHHMMSScc" in
/// digits and a GMT offset byte; `None` is "not specified" (16 '0's, 0).
fn volume_date(t: Option<i64>) -> [u8; 17] {
    let mut b = [b'0'; 17];
    b[16] = 0;
    if let Some(t) = t {
        let (y, mo, d, h, mi, s) = civil_utc(t);
        let y = y.clamp(1, 9999);
        let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
        b[..16].copy_from_slice(text.as_bytes());
    }
    b
}

/// One directory record (§9.1). `system_use` is the SUSP area (§9.1.13).
pub struct DirRecord<'a> {
    pub extent: Lba,
    pub data_length: u32,
    pub date: [u8; 7],
    pub flags: u8,
    /// `0x00` for `.`, `0x01` for `..` (§6.8.2.2), else d-characters.
    pub identifier: &'a [u8],
    pub system_use: &'a [u8],
}

impl DirRecord<'_> {
    /// Record length for an identifier and System Use length, padded to even.
    pub fn len(identifier: usize, system_use: usize) -> usize {
        let fixed = DIR_RECORD_HEADER + identifier + usize::from(identifier.is_multiple_of(2));
        (fixed + system_use).next_multiple_of(2)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let len = Self::len(self.identifier.len(), self.system_use.len());
        let start = out.len();
        out.push(len as u8); // Length of Directory Record
        out.push(0); // Extended Attribute Record Length
        out.extend_from_slice(&both32(self.extent.0)); // Location of Extent
        out.extend_from_slice(&both32(self.data_length)); // Data Length
        out.extend_from_slice(&self.date); // Recording Date and Time
        out.push(self.flags); // File Flags
        out.push(0); // File Unit Size (not interleaved)
        out.push(0); // Interleave Gap Size
        out.extend_from_slice(&both16(1)); // Volume Sequence Number
        out.push(self.identifier.len() as u8); // Length of File Identifier
        out.extend_from_slice(self.identifier);
        if self.identifier.len().is_multiple_of(2) {
            out.push(0); // Padding Field (§9.1.12)
        }
        out.extend_from_slice(self.system_use);
        out.resize(start + len, 0);
    }
}

/// The Primary Volume Descriptor (§8.4), with the fields smelt sets.
pub struct PrimaryVolume<'a> {
    /// Volume Identifier, d-characters (§8.4.6).
    pub volume_id: &'a str,
    /// Volume Space Size: sectors in the volume (§8.4.8).
    pub space_size: u32,
    pub path_table_size: u32,
    pub l_path_table: Lba,
    pub m_path_table: Lba,
    /// The 34-byte root directory record (§8.4.18).
    pub root_record: &'a [u8],
    /// Creation and modification time (§8.4.26-27).
    pub time: i64,
}

/// An a- or d-character field padded with spaces (§7.4.3, §8.4.5-6).
fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [b' '; N];
    b[..s.len().min(N)].copy_from_slice(&s.as_bytes()[..s.len().min(N)]);
    b
}

fn descriptor_header(kind: u8) -> Vec<u8> {
    let mut b = Vec::with_capacity(SECTOR as usize);
    b.push(kind); // Volume Descriptor Type (§8.1.1)
    b.extend_from_slice(STANDARD_ID); // Standard Identifier
    b.push(1); // Volume Descriptor Version
    b
}

impl PrimaryVolume<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = descriptor_header(1);
        b.push(0); // 7: unused
        b.extend_from_slice(&padded::<32>("")); // 8: System Identifier
        b.extend_from_slice(&padded::<32>(self.volume_id)); // 40: Volume Identifier
        b.extend_from_slice(&[0; 8]); // 72: unused
        b.extend_from_slice(&both32(self.space_size)); // 80: Volume Space Size
        b.extend_from_slice(&[0; 32]); // 88: unused (escape sequences in an SVD)
        b.extend_from_slice(&both16(1)); // 120: Volume Set Size
        b.extend_from_slice(&both16(1)); // 124: Volume Sequence Number
        b.extend_from_slice(&both16(SECTOR as u16)); // 128: Logical Block Size
        b.extend_from_slice(&both32(self.path_table_size)); // 132: Path Table Size
        b.extend_from_slice(&self.l_path_table.0.to_le_bytes()); // 140: Type L Path Table
        b.extend_from_slice(&0u32.to_le_bytes()); // 144: Optional Type L (none)
        b.extend_from_slice(&self.m_path_table.0.to_be_bytes()); // 148: Type M Path Table
        b.extend_from_slice(&0u32.to_be_bytes()); // 152: Optional Type M (none)
        b.extend_from_slice(self.root_record); // 156: root Directory Record
        b.extend_from_slice(&padded::<128>("")); // 190: Volume Set Identifier
        b.extend_from_slice(&padded::<128>("")); // 318: Publisher Identifier
        b.extend_from_slice(&padded::<128>("")); // 446: Data Preparer Identifier
        b.extend_from_slice(&padded::<128>("SMELT")); // 574: Application Identifier
        b.extend_from_slice(&padded::<37>("")); // 702: Copyright File Identifier
        b.extend_from_slice(&padded::<37>("")); // 739: Abstract File Identifier
        b.extend_from_slice(&padded::<37>("")); // 776: Bibliographic File Identifier
        b.extend_from_slice(&volume_date(Some(self.time))); // 813: Creation
        b.extend_from_slice(&volume_date(Some(self.time))); // 830: Modification
        b.extend_from_slice(&volume_date(None)); // 847: Expiration
        b.extend_from_slice(&volume_date(None)); // 864: Effective
        b.push(1); // 881: File Structure Version
        debug_assert_eq!(b.len(), 882);
        b.resize(SECTOR as usize, 0); // 882: reserved, 883: Application Use, 1395: reserved
        b
    }
}

/// The El Torito Boot Record Volume Descriptor (El Torito 1.0 §2.0): type
/// 0, boot system "EL TORITO SPECIFICATION", the catalog's sector at 0x47.
pub fn boot_record(catalog: Lba) -> Vec<u8> {
    let mut b = descriptor_header(0);
    let mut id = [0u8; 32];
    id[..23].copy_from_slice(b"EL TORITO SPECIFICATION");
    b.extend_from_slice(&id); // 7: Boot System Identifier
    b.extend_from_slice(&[0; 32]); // 39: Boot Identifier
    b.extend_from_slice(&catalog.0.to_le_bytes()); // 0x47: Boot Catalog pointer
    b.resize(SECTOR as usize, 0);
    b
}

/// The Volume Descriptor Set Terminator (§8.3).
pub fn terminator() -> Vec<u8> {
    let mut b = descriptor_header(255);
    b.resize(SECTOR as usize, 0);
    b
}

/// One path table record (§9.4); `big_endian` for the Type M table.
pub fn path_record(
    identifier: &[u8],
    extent: Lba,
    parent: u16,
    big_endian: bool,
    out: &mut Vec<u8>,
) {
    out.push(identifier.len() as u8); // Length of Directory Identifier
    out.push(0); // Extended Attribute Record Length
    if big_endian {
        out.extend_from_slice(&extent.0.to_be_bytes());
        out.extend_from_slice(&parent.to_be_bytes());
    } else {
        out.extend_from_slice(&extent.0.to_le_bytes());
        out.extend_from_slice(&parent.to_le_bytes());
    }
    out.extend_from_slice(identifier);
    if identifier.len() % 2 == 1 {
        out.push(0); // Padding Field
    }
}

/// Bytes of a path table record.
pub fn path_record_len(identifier: usize) -> usize {
    8 + identifier + identifier % 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(record_date(1_700_000_000), [123, 11, 14, 22, 13, 20, 0]);
        assert_eq!(record_date(-3_000_000_000), [0, 1, 1, 0, 0, 0, 0]);
        assert_eq!(&volume_date(Some(0))[..16], b"1970010100000000");
        assert_eq!(&volume_date(None)[..], b"0000000000000000\0");
    }

    #[test]
    fn record_lengths_are_even() {
        assert_eq!(DirRecord::len(1, 0), 34, "the root record in the PVD");
        assert_eq!(DirRecord::len(8, 7), 49 + 1);
        let mut out = Vec::new();
        DirRecord {
            extent: Lba(20),
            data_length: 2048,
            date: [0; 7],
            flags: FLAG_DIRECTORY,
            identifier: b"\0",
            system_use: &[],
        }
        .encode(&mut out);
        assert_eq!(out.len(), 34);
        assert_eq!(&out[2..10], &[20, 0, 0, 0, 0, 0, 0, 20]);
    }
}
