//! Progress for pulls, pushes and artifact writes: bars on a terminal, one
//! plain line per transfer otherwise (CI logs), nothing with `-q`. Always on
//! stderr. The library reports through [`Progress`] and never prints.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress of one transfer at a time, so the CLI can draw bars.
pub trait Progress {
    /// A transfer of `what` (a blob digest, an artifact name) begins;
    /// `total` bytes if known.
    fn start(&self, what: &str, total: Option<u64>);
    /// `bytes` more bytes were transferred.
    fn advance(&self, bytes: u64);
    /// The current transfer ended.
    fn finish(&self);
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _what: &str, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

/// A writer that reports every write to a [`Progress`].
pub struct ProgressWriter<'a, W> {
    pub inner: W,
    pub progress: &'a dyn Progress,
}

impl<W: Write> Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The progress reporter the CLI hands to pulls and pushes.
pub struct Reporter {
    bar: Mutex<Option<ProgressBar>>,
    mode: Mode,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quiet,
    Lines,
    Bars,
}

impl Reporter {
    /// `enabled` false means quiet; bars only when stderr is a terminal.
    pub fn new(enabled: bool) -> Reporter {
        let mode = match (enabled, std::io::stderr().is_terminal()) {
            (false, _) => Mode::Quiet,
            (true, false) => Mode::Lines,
            (true, true) => Mode::Bars,
        };
        Reporter {
            bar: Mutex::new(None),
            mode,
        }
    }
}

impl Progress for Reporter {
    fn start(&self, what: &str, total: Option<u64>) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => match total {
                Some(t) => tracing::info!("transferring {what} ({t} bytes)"),
                None => tracing::info!("transferring {what}"),
            },
            Mode::Bars => {
                let bar = match total {
                    Some(t) => ProgressBar::new(t),
                    None => ProgressBar::new_spinner(),
                };
                if let Ok(style) = ProgressStyle::with_template(
                    "{msg:40!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
                ) {
                    bar.set_style(style);
                }
                bar.set_message(what.to_string());
                if let Ok(mut b) = self.bar.lock() {
                    *b = Some(bar);
                }
            }
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(b) = self.bar.lock()
            && let Some(bar) = b.as_ref()
        {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock()
            && let Some(bar) = b.take()
        {
            bar.finish_and_clear();
        }
    }
}
