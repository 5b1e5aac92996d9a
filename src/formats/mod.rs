//! Byte-level writers for archive formats, fed from an [`FsTree`].
//!
//! Formats know nothing of specs or registries: they take a tree and options
//! and write bytes. Every writer streams file contents (never buffering a
//! whole file) and is deterministic: the same tree gives the same bytes.
//!
//! [`FsTree`]: crate::tree::FsTree

pub mod cpio;
pub mod fat;
pub mod gpt;
pub mod iso9660;
pub mod pe;
pub mod qcow2;
pub mod squashfs;
pub mod tar;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::tree::Content;

/// The buffer between file contents and the output: 128 KiB, the block size
/// of the parallel gzip compressor that most writers feed.
pub const IO_BUFFER: usize = 128 * 1024;

/// Errors from archive writers.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading content of {path:?} from {origin}: {source}")]
    Read {
        path: PathBuf,
        origin: String,
        #[source]
        source: io::Error,
    },
    #[error("content of {path:?} from {origin} is {got} bytes, expected {expected}")]
    ShortContent {
        path: PathBuf,
        origin: String,
        expected: u64,
        got: u64,
    },
    #[error("{path:?}: {what} cannot be stored in {format}")]
    Unrepresentable {
        path: PathBuf,
        what: String,
        format: &'static str,
    },
}

/// A writer that counts the bytes passed through it.
pub struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> CountingWriter<W> {
    pub fn new(inner: W) -> Self {
        CountingWriter { inner, count: 0 }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies exactly `content.len()` bytes of `content` to `out`; a source that
/// has shrunk (a host file changed since the walk) is an error naming `path`.
pub(crate) fn copy_content(
    content: &Content,
    path: &Path,
    out: &mut impl Write,
) -> Result<u64, WriteError> {
    let read_err = |source| WriteError::Read {
        path: path.into(),
        origin: content.origin(),
        source,
    };
    let mut reader = content.open().map_err(read_err)?;
    let mut buf = vec![0u8; IO_BUFFER.min(content.len().max(1) as usize)];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        out.write_all(&buf[..n]).map_err(|source| WriteError::Io {
            path: path.into(),
            source,
        })?;
        total += n as u64;
    }
    if total != content.len() {
        return Err(WriteError::ShortContent {
            path: path.into(),
            origin: content.origin(),
            expected: content.len(),
            got: total,
        });
    }
    Ok(total)
}
