//! Progress for transfers: bars on a terminal, one plain line per transfer
//! otherwise (CI logs), nothing with `-q`. Always on stderr.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::oci::Progress;

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
