//! The data area: file contents cut into blocks, compressed in parallel and
//! written in order, tail ends packed into fragment blocks.
//!
//! Three kinds of threads, all scoped:
//! - one reader walks the files in order, reads each block, decides what
//!   becomes of it (sparse, compressed block, tail end in a fragment, or a
//!   duplicate of an earlier file), numbers the blocks to compress and puts
//!   them on one shared queue, telling the collector what is coming through
//!   a bounded channel of [`Order`]s;
//! - `threads` workers take blocks from the queue as they become free (so
//!   a descheduled worker does not stall the others) and return them with
//!   their number;
//! - the collector (the caller's thread, which owns the output) follows the
//!   orders, writes the compressed blocks in number order, holding back the
//!   ones that finish early, and records where each went.
//!
//! Every decision that shapes the bytes is made by the reader alone, in file
//! order, so the image does not depend on the number of workers or on their
//! timing. The reader takes a credit per block from a bounded channel and
//! the collector returns it once the block is written, so at most
//! [`IN_FLIGHT_PER_WORKER`] blocks per worker are in memory, whatever the
//! file sizes.
//!
//! Duplicates: files whose size no other file has are streamed straight
//! through. Files sharing a size are hashed (SHA-256) first: those up to
//! [`DEDUP_IN_MEMORY`] are read once into memory, larger ones are read
//! twice (hash, then data). A file whose (size, hash) was seen before reuses
//! the earlier file's blocks and tail end, as mksquashfs's duplicate check
//! does (without its byte-for-byte compare: a SHA-256 collision is not a
//! practical concern).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use sha2::{Digest, Sha256};

use super::SquashfsError;
use super::compressor::BlockCompressor;
use super::layout::{DATA_UNCOMPRESSED, FragRef, FragmentEntry};
use crate::formats::WriteError;
use crate::tree::Content;

/// Files sharing a size with another file and at most this many bytes are
/// read into memory to be hashed before their blocks are sent: 8 MiB, so a
/// duplicate is found with one read while memory stays bounded.
pub const DEDUP_IN_MEMORY: u64 = 8 << 20;
/// Orders in flight between reader and collector. Orders are small; the
/// blocks they announce are bounded by [`IN_FLIGHT_PER_WORKER`].
const ORDER_QUEUE: usize = 1024;
/// Blocks sent to the workers and not yet written, per worker: enough that
/// no worker waits while another is slow, little enough to keep memory at a
/// few blocks per worker.
const IN_FLIGHT_PER_WORKER: usize = 4;
/// The reader's error when the collector hung up; the collector's own error
/// is the one reported.
const HUNG_UP: &str = "data collector stopped early";
/// Most compression workers started, whatever `threads` asks for.
pub const MAX_THREADS: usize = 256;

/// A regular file to store: its first name (for errors) and its bytes.
pub struct FileSource<'a> {
    pub path: &'a Path,
    pub content: &'a Content,
}

/// Where a file's data went.
#[derive(Clone, Debug, Default)]
pub struct FileData {
    /// Absolute offset of the first block (where it would be, if none).
    pub start: u64,
    pub size: u64,
    /// Bytes in all-zero blocks stored as size 0.
    pub sparse: u64,
    /// On-disk size words of the full blocks (format.txt 4).
    pub blocks: Vec<u32>,
    pub frag: Option<FragRef>,
}

/// What [`write_data`] produced.
pub struct DataArea {
    /// One per [`FileSource`], in order.
    pub files: Vec<FileData>,
    pub fragments: Vec<FragmentEntry>,
    /// Files stored as references to an identical earlier file.
    pub duplicates: u32,
}

/// A position-tracking output.
pub struct ImageOut<W: Write> {
    pub out: W,
    /// Bytes from the start of the image.
    pub pos: u64,
}

impl<W: Write> ImageOut<W> {
    pub fn write(&mut self, b: &[u8]) -> Result<(), SquashfsError> {
        self.out.write_all(b).map_err(SquashfsError::Io)?;
        self.pos += b.len() as u64;
        Ok(())
    }
}

/// What the collector must do next, in image order.
enum Order {
    /// The next file begins; its blocks follow.
    File { size: u64 },
    /// A data block of the current file: the next compressed result.
    Block,
    /// An all-zero block of the current file.
    Sparse,
    /// The current file's tail end went into a fragment.
    Tail(FragRef),
    /// A fragment block: the next compressed result.
    Fragment,
    /// The next file is identical to earlier file `of`.
    Duplicate { of: usize },
    /// Everything was sent.
    End,
}

/// A block for the workers, numbered in dispatch order.
type Job = (u64, Vec<u8>);
/// A worker's answer: the block's bytes and whether they are compressed.
type Compressed = io::Result<(Vec<u8>, bool)>;

/// Writes the data of `files` at `out.pos` onwards.
pub fn write_data<W: Write>(
    files: &[FileSource<'_>],
    opts: &super::SquashfsOptions,
    out: &mut ImageOut<W>,
) -> Result<DataArea, SquashfsError> {
    let threads = opts.threads.clamp(1, MAX_THREADS);
    let in_flight = threads * IN_FLIGHT_PER_WORKER;
    let (job_tx, job_rx) = sync_channel::<Job>(in_flight);
    let job_rx = Mutex::new(job_rx);
    // Unbounded, but never holds more than `in_flight` results: the reader
    // takes a credit for every job and the collector returns it.
    let (done_tx, done_rx) = channel::<(u64, Compressed)>();
    let (credit_tx, credit_rx) = sync_channel::<()>(in_flight);
    let (order_tx, order_rx) = sync_channel::<Order>(ORDER_QUEUE);
    let mut comps = Vec::with_capacity(threads);
    for _ in 0..threads {
        let c = BlockCompressor::new(opts.compression, opts.block_size);
        comps.push(c.map_err(SquashfsError::Compress)?);
    }
    std::thread::scope(|s| {
        for mut comp in comps {
            let (jobs, done) = (&job_rx, done_tx.clone());
            s.spawn(move || worker(&mut comp, jobs, &done));
        }
        drop(done_tx);
        let block_size = opts.block_size as usize;
        let reader =
            s.spawn(move || Reader::new(block_size, job_tx, credit_tx, order_tx).run(files));
        let mut results = Results {
            done: done_rx,
            credits: credit_rx,
            early: HashMap::new(),
            next: 0,
        };
        let collected = collect(&order_rx, &mut results, opts.block_size, out);
        drop((order_rx, results));
        match reader.join() {
            Err(_) => Err(SquashfsError::Internal("reader thread panicked")),
            // A read error stops the reader, which makes the collector fail
            // too: the reader's error is the one to report, unless the
            // reader stopped because the collector failed.
            Ok(Err(SquashfsError::Internal(HUNG_UP))) | Ok(Ok(())) => collected,
            Ok(Err(e)) => Err(e),
        }
    })
}

/// Compresses jobs from the shared queue until it closes.
fn worker(
    comp: &mut BlockCompressor,
    jobs: &Mutex<Receiver<Job>>,
    done: &Sender<(u64, Compressed)>,
) {
    let mut out = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, block)) = job else {
            return;
        };
        let answer = match comp.compress(&block, &mut out) {
            Ok(true) => Ok((std::mem::take(&mut out), true)),
            Ok(false) => Ok((block, false)),
            Err(e) => Err(e),
        };
        if done.send((seq, answer)).is_err() {
            return;
        }
    }
}

/// Compressed blocks in dispatch order, whichever worker finishes first.
struct Results {
    done: Receiver<(u64, Compressed)>,
    credits: Receiver<()>,
    /// Results that arrived before their turn.
    early: HashMap<u64, Compressed>,
    /// The sequence number of the next block to write.
    next: u64,
}

impl Results {
    /// Writes the next block; returns its on-disk size word.
    fn write_next<W: Write>(&mut self, out: &mut ImageOut<W>) -> Result<u32, SquashfsError> {
        let seq = self.next;
        self.next += 1;
        let answer = loop {
            if let Some(a) = self.early.remove(&seq) {
                break a;
            }
            let (s, a) = self.done.recv().map_err(|_| stopped())?;
            if s == seq {
                break a;
            }
            self.early.insert(s, a);
        };
        // Hand the credit back; the reader may have finished already.
        let _ = self.credits.try_recv();
        let (bytes, compressed) = answer.map_err(SquashfsError::Compress)?;
        out.write(&bytes)?;
        let flag = if compressed { 0 } else { DATA_UNCOMPRESSED };
        Ok(bytes.len() as u32 | flag)
    }
}

fn stopped() -> SquashfsError {
    SquashfsError::Internal("data reader stopped early")
}

/// The collector: follows the orders, writing blocks as they come back.
fn collect<W: Write>(
    orders: &Receiver<Order>,
    results: &mut Results,
    block_size: u32,
    out: &mut ImageOut<W>,
) -> Result<DataArea, SquashfsError> {
    let mut area = DataArea {
        files: Vec::new(),
        fragments: Vec::new(),
        duplicates: 0,
    };
    loop {
        let order = orders.recv().map_err(|_| stopped())?;
        let current = area.files.last_mut();
        match (order, current) {
            (Order::End, _) => return Ok(area),
            (Order::File { size }, _) => area.files.push(FileData {
                start: out.pos,
                size,
                ..FileData::default()
            }),
            (Order::Block, Some(f)) => f.blocks.push(results.write_next(out)?),
            (Order::Sparse, Some(f)) => {
                f.blocks.push(0);
                f.sparse += u64::from(block_size);
            }
            (Order::Tail(frag), Some(f)) => f.frag = Some(frag),
            (Order::Fragment, _) => {
                let start = out.pos;
                let size = results.write_next(out)?;
                area.fragments.push(FragmentEntry { start, size });
            }
            (Order::Duplicate { of }, _) => {
                let same = area.files.get(of).cloned().ok_or_else(stopped)?;
                area.files.push(same);
                area.duplicates += 1;
            }
            (Order::Block | Order::Sparse | Order::Tail(_), None) => {
                return Err(SquashfsError::Internal("data block before any file"));
            }
        }
    }
}

/// The reader's state; see the module doc.
struct Reader {
    block_size: usize,
    jobs: SyncSender<Job>,
    /// One slot per block in flight (see `write_data`).
    credits: SyncSender<()>,
    orders: SyncSender<Order>,
    /// The sequence number of the next job.
    next: u64,
    /// The fragment block being filled and its index.
    fragment: Vec<u8>,
    fragments: u32,
}

/// The reader's channels closed: the collector failed and will report why.
fn hung_up<T>(_: T) -> SquashfsError {
    SquashfsError::Internal(HUNG_UP)
}

impl Reader {
    fn new(
        block_size: usize,
        jobs: SyncSender<Job>,
        credits: SyncSender<()>,
        orders: SyncSender<Order>,
    ) -> Self {
        Reader {
            block_size,
            jobs,
            credits,
            orders,
            next: 0,
            fragment: Vec::with_capacity(block_size),
            fragments: 0,
        }
    }

    fn order(&self, o: Order) -> Result<(), SquashfsError> {
        self.orders.send(o).map_err(hung_up)
    }

    fn run(&mut self, files: &[FileSource<'_>]) -> Result<(), SquashfsError> {
        let mut sizes: HashMap<u64, u32> = HashMap::new();
        for f in files {
            *sizes.entry(f.content.len()).or_default() += 1;
        }
        let mut seen: HashMap<(u64, [u8; 32]), usize> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let len = f.content.len();
            if len == 0 || sizes.get(&len).copied().unwrap_or(0) < 2 {
                self.order(Order::File { size: len })?;
                self.stream(f)?;
                continue;
            }
            let held = if len <= DEDUP_IN_MEMORY {
                let mut buf = Vec::with_capacity(len as usize);
                read_exact_len(f, &mut buf)?;
                Some(buf)
            } else {
                None
            };
            let hash = match &held {
                Some(buf) => Sha256::digest(buf).into(),
                None => hash_content(f)?,
            };
            if let Some(&of) = seen.get(&(len, hash)) {
                self.order(Order::Duplicate { of })?;
                continue;
            }
            seen.insert((len, hash), i);
            self.order(Order::File { size: len })?;
            match held {
                Some(buf) => self.send_bytes(&buf)?,
                None => self.stream(f)?,
            }
        }
        if !self.fragment.is_empty() {
            self.flush_fragment()?;
        }
        self.order(Order::End)
    }

    /// Sends `data`, a whole file held in memory.
    fn send_bytes(&mut self, data: &[u8]) -> Result<(), SquashfsError> {
        let mut chunks = data.chunks_exact(self.block_size);
        for block in chunks.by_ref() {
            self.send_block(block.to_vec())?;
        }
        self.send_tail(chunks.remainder())
    }

    /// Reads and sends a file block by block.
    fn stream(&mut self, f: &FileSource<'_>) -> Result<(), SquashfsError> {
        let len = f.content.len();
        if len == 0 {
            return Ok(());
        }
        let mut r = open(f)?;
        let mut got = 0u64;
        let bs = self.block_size as u64;
        while got < len {
            let want = (len - got).min(bs) as usize;
            let mut buf = vec![0u8; want];
            let n = fill(&mut r, &mut buf).map_err(|e| read_err(f, e))?;
            got += n as u64;
            if n < want {
                return Err(short(f, got));
            }
            if want == self.block_size {
                self.send_block(buf)?;
            } else {
                self.send_tail(&buf)?;
            }
        }
        Ok(())
    }

    fn send_block(&mut self, block: Vec<u8>) -> Result<(), SquashfsError> {
        if is_zero(&block) {
            return self.order(Order::Sparse);
        }
        self.dispatch(block)?;
        self.order(Order::Block)
    }

    /// Queues a block for the workers (waiting while too many are in
    /// flight); its order must follow.
    fn dispatch(&mut self, block: Vec<u8>) -> Result<(), SquashfsError> {
        self.credits.send(()).map_err(hung_up)?;
        self.jobs.send((self.next, block)).map_err(hung_up)?;
        self.next += 1;
        Ok(())
    }

    /// Packs a tail end (shorter than a block) into the fragment block,
    /// starting a new one when it does not fit (first fit in file order).
    fn send_tail(&mut self, tail: &[u8]) -> Result<(), SquashfsError> {
        if tail.is_empty() {
            return Ok(());
        }
        if self.fragment.len() + tail.len() > self.block_size {
            self.flush_fragment()?;
        }
        let frag = FragRef {
            index: self.fragments,
            offset: self.fragment.len() as u32,
        };
        self.fragment.extend_from_slice(tail);
        self.order(Order::Tail(frag))
    }

    fn flush_fragment(&mut self) -> Result<(), SquashfsError> {
        let block = std::mem::replace(&mut self.fragment, Vec::with_capacity(self.block_size));
        self.dispatch(block)?;
        self.fragments = self.fragments.checked_add(1).ok_or(SquashfsError::Limit {
            what: "fragment blocks",
            limit: u64::from(u32::MAX),
        })?;
        self.order(Order::Fragment)
    }
}

/// Whether a block is all zeros, checked a page at a time so non-zero
/// blocks are usually rejected after the first page.
fn is_zero(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
}

fn open(f: &FileSource<'_>) -> Result<Box<dyn Read + Send>, SquashfsError> {
    f.content.open().map_err(|e| read_err(f, e))
}

fn read_err(f: &FileSource<'_>, source: io::Error) -> SquashfsError {
    SquashfsError::Write(WriteError::Read {
        path: f.path.into(),
        origin: f.content.origin(),
        source,
    })
}

fn short(f: &FileSource<'_>, got: u64) -> SquashfsError {
    SquashfsError::Write(WriteError::ShortContent {
        path: f.path.into(),
        origin: f.content.origin(),
        expected: f.content.len(),
        got,
    })
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The whole content into `buf`, which must then hold exactly `len()` bytes.
fn read_exact_len(f: &FileSource<'_>, buf: &mut Vec<u8>) -> Result<(), SquashfsError> {
    open(f)?.read_to_end(buf).map_err(|e| read_err(f, e))?;
    if buf.len() as u64 != f.content.len() {
        return Err(short(f, buf.len() as u64));
    }
    Ok(())
}

fn hash_content(f: &FileSource<'_>) -> Result<[u8; 32], SquashfsError> {
    let mut r = open(f)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; crate::formats::IO_BUFFER];
    let mut got = 0u64;
    loop {
        let n = fill(&mut r, &mut buf).map_err(|e| read_err(f, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
    }
    if got != f.content.len() {
        return Err(short(f, got));
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 10000]));
        let mut b = vec![0u8; 10000];
        b[9999] = 1;
        assert!(!is_zero(&b));
    }
}
