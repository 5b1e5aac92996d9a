//! Per-block compressors for data, fragment and metadata blocks.
//!
//! Every block is compressed on its own (squashfs reads blocks at random), so
//! each compressor is a reusable one-shot context: zlib streams via flate2
//! (squashfs's "gzip" is zlib with header, format.txt 2.4), zstd frames via
//! libzstd with the content size in the frame header, and complete `.xz`
//! streams via liblzma with a CRC32 check and the LZMA2 dictionary set to the
//! block size. The kernel's xz decoder is single-call with a dictionary of
//! `max(block_size, 8 KiB)` (fs/squashfs/xz_wrapper.c) and supports only
//! CRC32 or no check, which is why neither the preset's 8 MiB dictionary nor
//! liblzma's default CRC64 may be used. No BCJ filters.
//!
//! Output depends only on the input and the level: nothing here is threaded.

use std::io;

use flate2::{Compress, FlushCompress, Status};
use liblzma::stream::{Action, Check, Filters, LzmaOptions, Stream};

use super::SquashfsCompression;

/// A compressor for one thread.
pub enum BlockCompressor {
    Gzip(Compress),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
    Xz { level: u32, dict_size: u32 },
}

impl BlockCompressor {
    /// A compressor for blocks of at most `block_size` bytes.
    pub fn new(c: SquashfsCompression, block_size: u32) -> io::Result<BlockCompressor> {
        Ok(match c {
            SquashfsCompression::Gzip { level } => {
                BlockCompressor::Gzip(Compress::new(flate2::Compression::new(level), true))
            }
            SquashfsCompression::Zstd { level } => {
                BlockCompressor::Zstd(Box::new(zstd::bulk::Compressor::new(level)?))
            }
            SquashfsCompression::Xz { level } => BlockCompressor::Xz {
                level,
                dict_size: block_size,
            },
        })
    }

    /// `input` compressed into `out` (cleared first). Returns false, leaving
    /// `out` unspecified, when the result would not be smaller than the
    /// input: the caller then stores the block raw.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<bool> {
        out.clear();
        if input.is_empty() {
            return Ok(false);
        }
        match self {
            BlockCompressor::Gzip(c) => gzip(c, input, out)?,
            BlockCompressor::Zstd(c) => {
                out.reserve(zstd::zstd_safe::compress_bound(input.len()));
                c.compress_to_buffer(input, out)?;
            }
            BlockCompressor::Xz { level, dict_size } => xz(*level, *dict_size, input, out)?,
        }
        Ok(out.len() < input.len())
    }
}

fn gzip(c: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    c.reset();
    // deflate never grows data by more than ~0.1% plus a few bytes.
    out.reserve(input.len() + input.len() / 512 + 64);
    loop {
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&input[consumed..], out, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        if status == Status::StreamEnd {
            return Ok(());
        }
        out.reserve(out.capacity().max(4096));
    }
}

fn xz(level: u32, dict_size: u32, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut opts = LzmaOptions::new_preset(level).map_err(io::Error::other)?;
    opts.dict_size(dict_size);
    let mut filters = Filters::new();
    filters.lzma2(&opts);
    let mut s = Stream::new_stream_encoder(&filters, Check::Crc32).map_err(io::Error::other)?;
    out.reserve(input.len() + input.len() / 64 + 256);
    loop {
        let consumed = s.total_in() as usize;
        let status = s
            .process_vec(&input[consumed..], out, Action::Finish)
            .map_err(io::Error::other)?;
        if status == liblzma::stream::Status::StreamEnd {
            return Ok(());
        }
        out.reserve(out.capacity().max(4096));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    fn decompress(cmd: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
        let mut child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{cmd} failed");
        out.stdout
    }

    #[test]
    fn each_compressor_round_trips_and_reports_incompressible_input() {
        let text: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("line {} ", i % 997).into_bytes())
            .take(131072)
            .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let cases = [
            (
                SquashfsCompression::Zstd { level: 15 },
                "zstd",
                &["-dc"][..],
            ),
            (SquashfsCompression::Xz { level: 6 }, "xz", &["-dc"][..]),
        ];
        for (c, cmd, args) in cases {
            let mut bc = BlockCompressor::new(c, 131072).unwrap();
            let mut out = Vec::new();
            assert!(bc.compress(&text, &mut out).unwrap(), "{c:?}");
            assert_eq!(decompress(cmd, args, &out), text, "{c:?}");
            assert!(!bc.compress(&noise, &mut out).unwrap(), "{c:?} on noise");
        }
        let mut gz = BlockCompressor::new(SquashfsCompression::Gzip { level: 9 }, 131072).unwrap();
        let mut out = Vec::new();
        assert!(gz.compress(&text, &mut out).unwrap());
        assert_eq!(out[0], 0x78, "zlib header");
        let mut d = flate2::read::ZlibDecoder::new(&out[..]);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut back).unwrap();
        assert_eq!(back, text);
        assert!(!gz.compress(&noise, &mut out).unwrap());
    }

    #[test]
    fn xz_uses_crc32_and_a_block_sized_dictionary() {
        let mut bc = BlockCompressor::new(SquashfsCompression::Xz { level: 6 }, 65536).unwrap();
        let mut out = Vec::new();
        bc.compress(&vec![7u8; 10000], &mut out).unwrap();
        // Stream flags (xz file format 2.1.1.2): check type 0x01 = CRC32.
        assert_eq!(&out[..8], b"\xfd7zXZ\x00\x00\x01");
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("block.xz");
        std::fs::write(&path, &out).unwrap();
        let info =
            crate::tree::testutil::run(Command::new("xz").args(["--robot", "-lvv"]).arg(&path));
        assert!(info.contains("CRC32"), "{info}");
        // Block header filter properties: LZMA2 dict byte 16 = 64 KiB.
        let props = info.lines().find(|l| l.starts_with("block")).unwrap();
        assert!(props.contains("--lzma2=dict=64KiB"), "{props}");
    }
}
