//! Reading a GPT back: both copies, CRC-checked (for tests and `smelt
//! inspect`).

use std::io::{Read, Seek, SeekFrom};

use super::{
    ENTRY_SIZE, GptDisk, GptError, Header, Lba, MBR_TYPE_PROTECTIVE, MIN_SECTORS, Partition,
    SECTOR_SIZE, crc32, le32,
};

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
