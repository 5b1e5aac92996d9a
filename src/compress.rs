//! Compression writers whose output depends only on the input bytes and the
//! level, never on the number of CPUs.
//!
//! - zstd: libzstd's multithreaded mode with at least one worker. With
//!   `nbWorkers >= 1` zstd cuts the input into jobs whose size depends on the
//!   level, not on the worker count, so the frame is identical for any count
//!   (zstd.h, `ZSTD_c_nbWorkers`). The frame carries a checksum, no size.
//! - gzip: pigz-style parallel deflate. The input is cut into fixed
//!   [`GZIP_BLOCK`] blocks; each is compressed independently as raw deflate
//!   primed with the previous 32 KiB of input as dictionary and ended with a
//!   sync flush (the last one with a final block), and the pieces are
//!   concatenated into ONE gzip member (RFC 1952) with mtime 0, no name, OS 3
//!   (Unix), and a CRC-32 combined from per-block CRCs. Block boundaries are
//!   fixed, so the thread count changes only the speed. The dictionary keeps
//!   the ratio within a fraction of a percent of single-stream deflate.
//!
//! Non-goals: decompression, xz/lz4, gzip members with names or timestamps.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress};

/// 128 KiB gzip blocks, pigz's default: big enough that the per-block sync
/// marker (5 bytes) and restart cost are negligible, small enough to spread
/// an initramfs over many threads.
pub const GZIP_BLOCK: usize = 128 * 1024;
/// Deflate's window: the dictionary each block is primed with.
const DICT: usize = 32 * 1024;

/// A compression method and level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Levels 0–9, as `gzip -N`.
    Gzip {
        level: u32,
    },
    /// Levels 1–22 (negative: fast modes), as `zstd -N`.
    Zstd {
        level: i32,
    },
}

/// A writer that must be finished: `finish` writes the trailer and returns
/// the inner writer. Dropping without `finish` leaves truncated output.
pub trait FinishWrite<W>: Write {
    fn finish(self: Box<Self>) -> io::Result<W>;
}

/// A compressing writer around `out`, using all available CPUs.
pub fn writer<'a, W: Write + 'a>(
    c: Compression,
    out: W,
) -> io::Result<Box<dyn FinishWrite<W> + 'a>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    writer_with_threads(c, out, threads)
}

/// Like [`writer`] with an explicit thread count (at least 1 is used). The
/// output bytes do not depend on `threads`.
pub fn writer_with_threads<'a, W: Write + 'a>(
    c: Compression,
    out: W,
    threads: usize,
) -> io::Result<Box<dyn FinishWrite<W> + 'a>> {
    let threads = threads.max(1);
    Ok(match c {
        Compression::None => Box::new(Plain(out)),
        Compression::Gzip { level } => Box::new(ParGzip::new(out, level.min(9), threads)),
        Compression::Zstd { level } => {
            let mut enc = zstd::stream::write::Encoder::new(out, level)?;
            enc.multithread(u32::try_from(threads).unwrap_or(u32::MAX))?;
            enc.include_checksum(true)?;
            Box::new(enc)
        }
    })
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> FinishWrite<W> for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<W> {
        self.0.flush()?;
        Ok(self.0)
    }
}

impl<W: Write> FinishWrite<W> for zstd::stream::write::Encoder<'static, W> {
    fn finish(self: Box<Self>) -> io::Result<W> {
        let mut w = (*self).finish()?;
        w.flush()?;
        Ok(w)
    }
}

/// One block for a worker: its input, the dictionary, whether it is last.
struct Job {
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

/// A worker's answer: the deflate bytes and the CRC of the block's input.
type Done = io::Result<(Vec<u8>, Crc)>;

struct Worker {
    jobs: SyncSender<Job>,
    done: Receiver<Done>,
    handle: JoinHandle<()>,
}

/// The parallel gzip writer; see the module doc.
struct ParGzip<W: Write> {
    out: W,
    workers: Vec<Worker>,
    /// Input not yet sent, less than one block.
    buf: Vec<u8>,
    /// The last `DICT` bytes of input already sent.
    dict: Vec<u8>,
    /// Which worker gets the next block; blocks go round-robin.
    next: usize,
    /// Workers with a block in flight, oldest first.
    pending: VecDeque<usize>,
    crc: Crc,
    /// Whether the gzip header is written.
    started: bool,
}

fn compress_block(level: u32, job: &Job) -> Done {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == job.data.len();
        // Done when all input is in and the flush completed, which deflate
        // signals by leaving spare room in the output.
        if (job.last && status == flate2::Status::StreamEnd)
            || (!job.last && all_in && out.len() < out.capacity())
        {
            break;
        }
    }
    let mut crc = Crc::new();
    crc.update(&job.data);
    Ok((out, crc))
}

impl<W: Write> ParGzip<W> {
    fn new(out: W, level: u32, threads: usize) -> Self {
        let workers = (0..threads)
            .map(|_| {
                let (jobs, rx) = sync_channel::<Job>(1);
                let (tx, done) = sync_channel::<Done>(2);
                let handle = std::thread::spawn(move || {
                    for job in rx {
                        if tx.send(compress_block(level, &job)).is_err() {
                            break;
                        }
                    }
                });
                Worker { jobs, done, handle }
            })
            .collect();
        ParGzip {
            out,
            workers,
            buf: Vec::with_capacity(GZIP_BLOCK),
            dict: Vec::new(),
            next: 0,
            pending: VecDeque::new(),
            crc: Crc::new(),
            started: false,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=3 (RFC 1952 section 2.3).
        self.out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])
    }

    /// Writes the oldest block in flight.
    fn collect_one(&mut self) -> io::Result<()> {
        let Some(w) = self.pending.pop_front() else {
            return Ok(());
        };
        let (bytes, crc) = self.workers[w]
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip worker thread died"))??;
        self.crc.combine(&crc);
        self.out.write_all(&bytes)
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        if !self.started {
            self.started = true;
            self.header()?;
        }
        if self.pending.len() >= self.workers.len() * 2 {
            self.collect_one()?;
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(GZIP_BLOCK));
        let job = Job {
            dict: self.dict.clone(),
            data,
            last,
        };
        let tail = job.data.len().saturating_sub(DICT);
        if job.data.len() >= DICT {
            self.dict = job.data[tail..].to_vec();
        } else {
            self.dict.extend_from_slice(&job.data);
            let cut = self.dict.len().saturating_sub(DICT);
            self.dict.drain(..cut);
        }
        let w = self.next;
        self.next = (self.next + 1) % self.workers.len();
        self.workers[w]
            .jobs
            .send(job)
            .map_err(|_| io::Error::other("gzip worker thread died"))?;
        self.pending.push_back(w);
        Ok(())
    }
}

impl<W: Write> Write for ParGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_BLOCK - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == GZIP_BLOCK {
            self.send(false)?;
        }
        Ok(n)
    }

    /// Flushes only the inner writer: blocks are cut at fixed offsets, so a
    /// flush must not end a block early.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> FinishWrite<W> for ParGzip<W> {
    fn finish(mut self: Box<Self>) -> io::Result<W> {
        self.send(true)?;
        while !self.pending.is_empty() {
            self.collect_one()?;
        }
        let (crc, len) = (self.crc.sum(), self.crc.amount());
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.flush()?;
        let me = *self;
        for w in me.workers {
            drop(w.jobs);
            let _ = w.handle.join();
        }
        Ok(me.out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    /// Compressible but not trivial data: pseudo-random words.
    fn sample(len: usize) -> Vec<u8> {
        let words: [&[u8]; 8] = [
            b"alpha ",
            b"beta ",
            b"gamma\n",
            b"delta ",
            b"kernel ",
            b"initrd ",
            b"\x00\x01",
            b"zz ",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(words[(x % 8) as usize]);
            if x.is_multiple_of(5) {
                out.push((x >> 32) as u8);
            }
        }
        out.truncate(len);
        out
    }

    fn compress(c: Compression, data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = writer_with_threads(c, Vec::new(), threads).unwrap();
        // Odd write sizes cross block boundaries.
        for chunk in data.chunks(77_777) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn decompress(tool: &str, data: &[u8]) -> Vec<u8> {
        let mut child = Command::new(tool)
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "{tool} -dc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    #[test]
    fn gzip_round_trips_and_ignores_thread_count() {
        let data = sample(3 * GZIP_BLOCK + 12_345);
        let one = compress(Compression::Gzip { level: 6 }, &data, 1);
        assert_eq!(&one[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(decompress("gzip", &one), data);
        assert_eq!(compress(Compression::Gzip { level: 6 }, &data, 2), one);
        assert_eq!(compress(Compression::Gzip { level: 6 }, &data, 3), one);
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert!(
            one.len() < single.len() * 101 / 100,
            "{} vs single-stream {}",
            one.len(),
            single.len()
        );
        let mut t = Command::new("gzip")
            .args(["-t"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        t.stdin.take().unwrap().write_all(&one).unwrap();
        assert!(t.wait().unwrap().success());
    }

    #[test]
    fn gzip_edge_sizes() {
        for len in [
            0,
            1,
            GZIP_BLOCK - 1,
            GZIP_BLOCK,
            GZIP_BLOCK + 1,
            2 * GZIP_BLOCK,
        ] {
            let data = sample(len);
            let z = compress(Compression::Gzip { level: 9 }, &data, 2);
            assert_eq!(decompress("gzip", &z), data, "length {len}");
        }
        let z = compress(Compression::Gzip { level: 0 }, b"stored", 1);
        assert_eq!(decompress("gzip", &z), b"stored");
    }

    #[test]
    fn zstd_round_trips_and_ignores_worker_count() {
        // Several zstd jobs at level 1 (job size grows with the window).
        let data = sample(9 << 20);
        let one = compress(Compression::Zstd { level: 1 }, &data, 1);
        assert_eq!(decompress("zstd", &one), data);
        assert_eq!(compress(Compression::Zstd { level: 1 }, &data, 2), one);
        assert_eq!(
            decompress("zstd", &compress(Compression::Zstd { level: 3 }, &[], 2)),
            b""
        );
    }

    #[test]
    fn none_passes_through() {
        assert_eq!(compress(Compression::None, b"abc", 4), b"abc");
    }
}
