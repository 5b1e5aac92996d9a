//! Metadata streams: records chopped into 8 KiB blocks, each compressed and
//! preceded by a u16 size header (format.txt 2.2), and lookup tables built
//! from them (format.txt 2.3).
//!
//! A [`MetaWriter`] compresses each block as soon as it fills, so the table
//! offset of the block being filled is always known and a record's
//! [`MetaRef`] can be handed out when it is written. That is what lets the
//! inode and directory tables, which point at each other, be built in one
//! pass: a directory's listing is written after its children's inodes, and
//! its own inode after its listing.

use std::io;

use super::compressor::BlockCompressor;
use super::layout::{METADATA_SIZE, METADATA_UNCOMPRESSED, MetaRef};

/// One metadata table being built in memory.
pub struct MetaWriter {
    /// The block being filled, always shorter than `METADATA_SIZE`.
    pending: Vec<u8>,
    /// Finished blocks, headers included: the table's on-disk bytes.
    done: Vec<u8>,
    /// Table offsets of the finished blocks, in order.
    block_starts: Vec<u64>,
    scratch: Vec<u8>,
}

impl Default for MetaWriter {
    fn default() -> Self {
        MetaWriter::new()
    }
}

impl MetaWriter {
    pub fn new() -> MetaWriter {
        MetaWriter {
            pending: Vec::with_capacity(METADATA_SIZE),
            done: Vec::new(),
            block_starts: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Where the next byte written will be.
    pub fn position(&self) -> MetaRef {
        MetaRef {
            block: self.done.len() as u64,
            // `pending` is flushed whenever it reaches METADATA_SIZE.
            offset: self.pending.len() as u16,
        }
    }

    pub fn write(&mut self, mut data: &[u8], c: &mut BlockCompressor) -> io::Result<()> {
        while !data.is_empty() {
            let n = data.len().min(METADATA_SIZE - self.pending.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == METADATA_SIZE {
                self.flush_block(c)?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self, c: &mut BlockCompressor) -> io::Result<()> {
        self.block_starts.push(self.done.len() as u64);
        let (header, body) = if c.compress(&self.pending, &mut self.scratch)? {
            (self.scratch.len() as u16, &self.scratch)
        } else {
            (
                self.pending.len() as u16 | METADATA_UNCOMPRESSED,
                &self.pending,
            )
        };
        self.done.extend_from_slice(&header.to_le_bytes());
        self.done.extend_from_slice(body);
        self.pending.clear();
        Ok(())
    }

    /// The table's bytes and the table offsets of its blocks; a partial last
    /// block is compressed as it is.
    pub fn finish(mut self, c: &mut BlockCompressor) -> io::Result<(Vec<u8>, Vec<u64>)> {
        if !self.pending.is_empty() {
            self.flush_block(c)?;
        }
        Ok((self.done, self.block_starts))
    }
}

/// A lookup table (format.txt 2.3) whose metadata blocks will be written at
/// absolute offset `at`: returns the blocks and, separately, the list of
/// their absolute locations, which the superblock (or the xattr table
/// header) points at and which must follow the blocks.
pub fn lookup_table(
    records: &[u8],
    at: u64,
    c: &mut BlockCompressor,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut w = MetaWriter::new();
    w.write(records, c)?;
    let (blocks, starts) = w.finish(c)?;
    let list = starts.iter().flat_map(|s| (at + s).to_le_bytes()).collect();
    Ok((blocks, list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::squashfs::SquashfsCompression;

    #[test]
    fn blocks_fill_to_8k_and_positions_follow() {
        let mut c = BlockCompressor::new(SquashfsCompression::Zstd { level: 3 }, 4096).unwrap();
        let mut w = MetaWriter::new();
        assert_eq!(w.position(), MetaRef::default());
        w.write(&vec![1u8; 8000], &mut c).unwrap();
        assert_eq!(w.position().offset, 8000);
        w.write(&vec![2u8; 400], &mut c).unwrap();
        let p = w.position();
        assert_eq!(p.offset, 208);
        assert!(p.block > 2 && p.block < 200, "compressed: {p:?}");
        let (bytes, starts) = w.finish(&mut c).unwrap();
        assert_eq!(starts, vec![0, p.block]);
        let hdr = u16::from_le_bytes([bytes[0], bytes[1]]);
        assert_eq!(u64::from(hdr) + 2, p.block);
    }

    #[test]
    fn incompressible_blocks_are_stored_raw() {
        let mut c = BlockCompressor::new(SquashfsCompression::Gzip { level: 9 }, 4096).unwrap();
        let (blocks, list) = lookup_table(&[9, 8, 7, 6], 1000, &mut c).unwrap();
        assert_eq!(blocks, [4, 0x80, 9, 8, 7, 6]);
        assert_eq!(list, 1000u64.to_le_bytes());
    }
}
