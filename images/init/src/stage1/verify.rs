//! Checking the root image before the kernel parses a byte of it: the
//! SHA-256 of the first `size` bytes of the root device must be the one
//! the builder recorded.
//!
//! Read in [`CHUNK`]-byte pieces through [`Sys::read_at`]; progress is
//! printed only when hashing takes longer than [`QUIET_FOR`] (a slow USB
//! stick), then every [`QUIET_FOR`]. Non-goals: protecting against a device
//! that returns different bytes on a second read (dm-verity's job), and
//! signatures: the hash comes from the initramfs, which is itself signed
//! as part of the UKI.

use std::fmt::Write as _;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::sys::Sys;

/// 1 MiB: large enough that per-read overhead vanishes against a CD's
/// or a USB stick's throughput, small enough to stay cheap in RAM.
pub const CHUNK: usize = 1 << 20;
/// Silence before the first progress line, and between lines.
pub const QUIET_FOR: Duration = Duration::from_secs(2);

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Hex SHA-256 of the first `size` bytes of `path`.
pub fn sha256_prefix(sys: &dyn Sys, path: &str, size: u64) -> Result<String, String> {
    let start = sys.now();
    let mut next_report = start + QUIET_FOR;
    let mut h = Sha256::new();
    let mut off = 0u64;
    while off < size {
        let want = (size - off).min(CHUNK as u64) as usize;
        let buf = sys
            .read_at(path, off, want)
            .map_err(|e| format!("reading {path} at byte {off}: {e}"))?;
        if buf.is_empty() {
            return Err(format!(
                "{path} ends at byte {off}, but the root image is {size} bytes"
            ));
        }
        h.update(&buf);
        off += buf.len() as u64;
        let now = sys.now();
        if now >= next_report && off < size {
            sys.log(&format!(
                "smelt stage1: verifying root image: {} of {} MiB",
                off >> 20,
                size.div_ceil(1 << 20)
            ));
            next_report = now + QUIET_FOR;
        }
    }
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    #[test]
    fn hashes_only_the_prefix() {
        let sys = FakeSys::new().file("/dev/vda2", "testtrailing-partition-bytes");
        assert_eq!(
            sha256_prefix(&sys, "/dev/vda2", 4).unwrap(),
            // sha256("test")
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert!(sys.logs().is_empty());
    }

    #[test]
    fn short_device_and_read_errors_name_the_device() {
        let sys = FakeSys::new().file("/dev/vda2", "tes");
        assert_eq!(
            sha256_prefix(&sys, "/dev/vda2", 4).unwrap_err(),
            "/dev/vda2 ends at byte 3, but the root image is 4 bytes"
        );
        let e = sha256_prefix(&sys, "/dev/nope", 4).unwrap_err();
        assert!(e.starts_with("reading /dev/nope at byte 0: "), "{e}");
    }

    #[test]
    fn progress_only_when_slow() {
        let data = vec![7u8; 3 * CHUNK + 5];
        let sys = FakeSys::new();
        sys.files
            .borrow_mut()
            .insert("/dev/sr0".into(), data.clone());
        // Each read takes 1.5 s on this fake device.
        sys.read_delay.set(Duration::from_millis(1500));
        let got = sha256_prefix(&sys, "/dev/sr0", data.len() as u64).unwrap();
        assert_eq!(got, hex(&Sha256::digest(&data)));
        assert_eq!(sys.logs(), "smelt stage1: verifying root image: 2 of 4 MiB");
    }
}
