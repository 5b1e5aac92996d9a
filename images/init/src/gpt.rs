//! Reading a GUID partition table to find a partition by its unique GUID
//! (PARTUUID) or name (PARTLABEL): the kernel's uevent gives neither the
//! GUID nor (reliably, before 5.x) the name, and there is no udev here.
//!
//! UEFI 2.10 §5.3: the header is at LBA 1 (a backup at the disk's last
//! LBA), signature `EFI PART`, with a CRC32 of its first `header_size`
//! bytes (the CRC field zeroed) and a CRC32 of the entry array. Entries
//! are `entry_size` bytes (128 · 2ⁿ); an all-zero type GUID marks an
//! unused one. GUIDs are stored mixed-endian (the first three fields
//! little-endian), names are UTF-16LE, NUL-padded. Entry `i` is the
//! kernel's partition number `i + 1` (block/partitions/efi.c).
//! Non-goals: writing, repairing, protective-MBR checks, the attribute bits.

use std::fmt;

/// `EFI PART`.
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// The smallest header: up to and including the entry array CRC.
pub const HEADER_MIN: usize = 92;
/// Sanity limit on the entry array read from disk (the usual one is
/// 128 × 128 bytes = 16 KiB).
pub const ENTRIES_MAX_BYTES: u64 = 1 << 20;

/// A logical block address, in units of the disk's logical block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lba(pub u64);

impl Lba {
    /// Byte offset on a disk of `block_size`-byte logical blocks.
    pub fn offset(self, block_size: u64) -> Option<u64> {
        self.0.checked_mul(block_size)
    }
}

/// Why a header or entry array was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptError {
    Short(&'static str),
    Signature,
    HeaderSize(u32),
    HeaderCrc { stored: u32, computed: u32 },
    MyLba { expected: u64, found: u64 },
    EntrySize(u32),
    EntriesTooLarge(u64),
    EntriesCrc { stored: u32, computed: u32 },
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptError::Short(what) => write!(f, "{what} is truncated"),
            GptError::Signature => write!(f, "no \"EFI PART\" signature"),
            GptError::HeaderSize(n) => write!(f, "header size {n} out of range"),
            GptError::HeaderCrc { stored, computed } => write!(
                f,
                "header CRC32 {stored:#010x} does not match its contents ({computed:#010x})"
            ),
            GptError::MyLba { expected, found } => {
                write!(
                    f,
                    "header says it is at LBA {found}, read from LBA {expected}"
                )
            }
            GptError::EntrySize(n) => write!(f, "entry size {n} is not 128·2ⁿ"),
            GptError::EntriesTooLarge(n) => write!(f, "entry array of {n} bytes is too large"),
            GptError::EntriesCrc { stored, computed } => write!(
                f,
                "entry array CRC32 {stored:#010x} does not match its contents ({computed:#010x})"
            ),
        }
    }
}

/// A GUID as stored on disk (16 bytes, mixed-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

/// The canonical lowercase `8-4-4-4-12` form, as blkid prints PARTUUID.
impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02x}"))
    }
}

/// The header fields this reader uses (UEFI 2.10 table 5-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Where this header says it is (1 for the primary).
    pub my_lba: Lba,
    /// Where the other copy is.
    pub alternate_lba: Lba,
    /// First LBA of the entry array.
    pub entries_lba: Lba,
    pub num_entries: u32,
    /// Bytes per entry: 128 · 2ⁿ.
    pub entry_size: u32,
    pub entries_crc32: u32,
}

impl Header {
    /// Bytes of the entry array (checked against [`ENTRIES_MAX_BYTES`]).
    pub fn entries_len(&self) -> u64 {
        u64::from(self.num_entries) * u64::from(self.entry_size)
    }
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The kernel's partition number (entry index + 1).
    pub number: u32,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: Lba,
    pub last_lba: Lba,
    /// The partition name (PARTLABEL).
    pub name: String,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn guid_at(b: &[u8], at: usize) -> Option<Guid> {
    Some(Guid(b.get(at..at + 16)?.try_into().ok()?))
}

/// Parse and check the header in `block` (one logical block read from
/// `lba`).
pub fn parse_header(block: &[u8], lba: Lba) -> Result<Header, GptError> {
    let short = || GptError::Short("GPT header");
    if block.get(..8).ok_or_else(short)? != SIGNATURE {
        return Err(GptError::Signature);
    }
    let size = u32_at(block, 12).ok_or_else(short)?;
    if (size as usize) < HEADER_MIN || size as usize > block.len() {
        return Err(GptError::HeaderSize(size));
    }
    let stored = u32_at(block, 16).ok_or_else(short)?;
    let mut h = block.get(..size as usize).ok_or_else(short)?.to_vec();
    h[16..20].fill(0);
    let computed = crc32(&h);
    if computed != stored {
        return Err(GptError::HeaderCrc { stored, computed });
    }
    let my_lba = u64_at(block, 24).ok_or_else(short)?;
    if my_lba != lba.0 {
        return Err(GptError::MyLba {
            expected: lba.0,
            found: my_lba,
        });
    }
    let entry_size = u32_at(block, 84).ok_or_else(short)?;
    if entry_size < 128 || !entry_size.is_power_of_two() {
        return Err(GptError::EntrySize(entry_size));
    }
    let header = Header {
        my_lba: Lba(my_lba),
        alternate_lba: Lba(u64_at(block, 32).ok_or_else(short)?),
        entries_lba: Lba(u64_at(block, 72).ok_or_else(short)?),
        num_entries: u32_at(block, 80).ok_or_else(short)?,
        entry_size,
        entries_crc32: u32_at(block, 88).ok_or_else(short)?,
    };
    if header.entries_len() > ENTRIES_MAX_BYTES {
        return Err(GptError::EntriesTooLarge(header.entries_len()));
    }
    Ok(header)
}

/// The used entries of the array `bytes` described by `h`, CRC checked.
pub fn parse_entries(bytes: &[u8], h: &Header) -> Result<Vec<Entry>, GptError> {
    let len = h.entries_len() as usize;
    let array = bytes.get(..len).ok_or(GptError::Short("GPT entry array"))?;
    let computed = crc32(array);
    if computed != h.entries_crc32 {
        return Err(GptError::EntriesCrc {
            stored: h.entries_crc32,
            computed,
        });
    }
    let mut out = Vec::new();
    for (i, e) in array.chunks_exact(h.entry_size as usize).enumerate() {
        let short = || GptError::Short("GPT entry");
        let type_guid = guid_at(e, 0).ok_or_else(short)?;
        if type_guid.is_zero() {
            continue;
        }
        let name: Vec<u16> = e
            .get(56..128)
            .ok_or_else(short)?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        out.push(Entry {
            number: i as u32 + 1,
            type_guid,
            unique_guid: guid_at(e, 16).ok_or_else(short)?,
            first_lba: Lba(u64_at(e, 32).ok_or_else(short)?),
            last_lba: Lba(u64_at(e, 40).ok_or_else(short)?),
            name: String::from_utf16_lossy(&name),
        });
    }
    Ok(out)
}

/// CRC-32 as UEFI uses it (IEEE 802.3, reflected, polynomial 0xEDB88320,
/// initial and final XOR 0xFFFFFFFF; the zlib one).
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
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Test helpers: a disk image of 512-byte blocks with a primary GPT.
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// Entry bytes for (unique GUID bytes as on disk, name, first, last).
    pub fn entries(parts: &[([u8; 16], &str, u64, u64)], count: usize) -> Vec<u8> {
        let mut a = vec![0u8; count * 128];
        for (i, (guid, name, first, last)) in parts.iter().enumerate() {
            let e = &mut a[i * 128..(i + 1) * 128];
            e[..16].copy_from_slice(&[0xaf; 16]); // some type GUID
            e[16..32].copy_from_slice(guid);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (j, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        a
    }

    /// A 512-byte header block at LBA 1 for `entries` at LBA 2.
    pub fn header(entries: &[u8], count: u32) -> Vec<u8> {
        header_at(entries, count, 1, 2)
    }

    /// A 512-byte header block that says it is at `my_lba`.
    pub fn header_at(entries: &[u8], count: u32, my_lba: u64, entries_lba: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&1000u64.to_le_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&count.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(entries).to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Protective MBR block, header at LBA 1, entries from LBA 2.
    pub fn disk(parts: &[([u8; 16], &str, u64, u64)]) -> Vec<u8> {
        let e = entries(parts, 128);
        let mut d = vec![0u8; 512];
        d.extend(header(&e, 128));
        d.extend(e);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    /// `0f0e0d0c-0b0a-0908-0706-050403020100` as stored on disk.
    const G: [u8; 16] = [
        0x0c, 0x0d, 0x0e, 0x0f, 0x0a, 0x0b, 0x08, 0x09, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x00,
    ];

    #[test]
    fn crc32_known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_is_mixed_endian() {
        assert_eq!(Guid(G).to_string(), "0f0e0d0c-0b0a-0908-0706-050403020100");
    }

    #[test]
    fn parses_header_and_used_entries() {
        let d = disk(&[
            (G, "smelt-root-a", 2048, 4095),
            ([0x11; 16], "data", 4096, 8191),
        ]);
        let h = parse_header(&d[512..1024], Lba(1)).unwrap();
        assert_eq!(
            (h.entries_lba, h.num_entries, h.entry_size),
            (Lba(2), 128, 128)
        );
        let e = parse_entries(&d[1024..], &h).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].number, 1);
        assert_eq!(
            e[0].unique_guid.to_string(),
            "0f0e0d0c-0b0a-0908-0706-050403020100"
        );
        assert_eq!(e[0].name, "smelt-root-a");
        assert_eq!((e[0].first_lba, e[0].last_lba), (Lba(2048), Lba(4095)));
        assert_eq!((e[1].number, e[1].name.as_str()), (2, "data"));
    }

    #[test]
    fn corrupt_header_or_entries_rejected_with_reason() {
        let d = disk(&[(G, "root", 34, 100)]);
        let mut bad = d[512..1024].to_vec();
        bad[80] ^= 1; // num_entries changed, CRC stale
        assert!(matches!(
            parse_header(&bad, Lba(1)),
            Err(GptError::HeaderCrc { .. })
        ));
        let mut sig = d[512..1024].to_vec();
        sig[0] = b'X';
        assert_eq!(parse_header(&sig, Lba(1)), Err(GptError::Signature));
        assert!(matches!(
            parse_header(&d[512..1024], Lba(7)),
            Err(GptError::MyLba {
                expected: 7,
                found: 1
            })
        ));
        assert_eq!(
            parse_header(&d[512..560], Lba(1)),
            Err(GptError::HeaderSize(92))
        );
        let h = parse_header(&d[512..1024], Lba(1)).unwrap();
        let mut e = d[1024..].to_vec();
        e[16] ^= 0xff;
        let err = parse_entries(&e, &h).unwrap_err();
        assert!(matches!(err, GptError::EntriesCrc { .. }));
        assert!(err.to_string().starts_with("entry array CRC32 0x"), "{err}");
        assert_eq!(
            parse_entries(&e[..100], &h),
            Err(GptError::Short("GPT entry array"))
        );
    }

    #[test]
    fn odd_entry_size_and_huge_arrays_rejected() {
        let e = entries(&[], 4);
        let mut h = header(&e, 4);
        h[84..88].copy_from_slice(&100u32.to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(parse_header(&h, Lba(1)), Err(GptError::EntrySize(100)));
        let mut h = header(&e, u32::MAX);
        h[16..20].fill(0);
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            parse_header(&h, Lba(1)),
            Err(GptError::EntriesTooLarge(_))
        ));
    }

    /// Differential check against sgdisk, when the host has it.
    #[test]
    fn reads_what_sgdisk_writes() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let img = dir.path().join("disk.img");
        if std::fs::write(&img, vec![0u8; 4 << 20]).is_err() {
            return;
        }
        let out = std::process::Command::new("sgdisk")
            .args(["-n", "1:2048:4095", "-c", "1:smelt-root-a", "-u"])
            .arg("1:0F0E0D0C-0B0A-0908-0706-050403020100")
            .arg(&img)
            .output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!("sgdisk not available: differential GPT check skipped");
            return;
        }
        let d = std::fs::read(&img).unwrap();
        let h = parse_header(&d[512..1024], Lba(1)).unwrap();
        let off = h.entries_lba.offset(512).unwrap() as usize;
        let e = parse_entries(&d[off..], &h).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].unique_guid.to_string(),
            "0f0e0d0c-0b0a-0908-0706-050403020100"
        );
        assert_eq!(e[0].name, "smelt-root-a");
        // The backup header at the last LBA checks out too.
        let last = d.len() / 512 - 1;
        let b = parse_header(&d[last * 512..], Lba(last as u64)).unwrap();
        assert_eq!(b.alternate_lba, Lba(1));
    }
}
