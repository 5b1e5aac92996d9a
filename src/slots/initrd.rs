//! The config initrd (`NAME-config.img`) of kernel+initrd and
//! kernel+squashfs outputs: an uncompressed newc cpio holding
//! `smelt/nocloud/` with the seed's files and the marker
//! `smelt/nocloud/.smelt-slot` (docs/slots.md). The boot loader loads it after
//! the main initrd; the kernel unpacks both into one rootfs.
//!
//! Reproducible: directories 0755, files 0644, owner root, every mtime the
//! build's epoch, entries sorted ([`crate::formats::cpio`] walk order), no
//! `.` entry (the archive must not change the mode of the initramfs root).
//! The epoch is read back from the marker, so `smelt inject --clear`
//! rebuilds the pristine file byte for byte.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::formats::WriteError;
use crate::formats::cpio::{self, CpioOptions, CpioReadError};
use crate::tree::{Content, FsTree, Meta, Node};

use super::Config;
use super::nocloud::config_tree;

/// Where the seed lives inside the initramfs.
pub const DIR: &str = "smelt/nocloud";
/// The marker's path and exact contents.
pub const MARKER: &str = "smelt/nocloud/.smelt-slot";
pub const MARKER_TEXT: &[u8] = b"smelt-nocloud-initrd v1\n";
/// Config initrds larger than this are not read (the seed is a few files;
/// a bigger file is some other initrd).
pub const MAX_SIZE: u64 = 256 << 20;

/// Errors recognising a config initrd.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    #[error(transparent)]
    Cpio(#[from] CpioReadError),
    #[error("not a smelt config initrd: {0}")]
    Foreign(String),
    #[error("writing the config initrd: {0}")]
    Write(#[from] WriteError),
    #[error("epoch {0} does not fit a cpio mtime (0..2^32)")]
    Epoch(i64),
}

/// The config initrd for `config`, every mtime `epoch`.
pub fn build(config: &Config, epoch: i64) -> Result<Vec<u8>, InitrdError> {
    if u32::try_from(epoch).is_err() {
        return Err(InitrdError::Epoch(epoch));
    }
    let meta = |mode| Meta {
        mtime: epoch,
        ..Meta::root(mode)
    };
    let mut seed = config_tree(config, epoch);
    let marker = Node::file(meta(0o644), Content::Bytes(MARKER_TEXT.into()));
    // ".smelt-slot" is not a seed file name Config::check allows to clash.
    let _ = seed.insert(std::path::Path::new(".smelt-slot"), marker);
    let mut t = FsTree::new();
    t.root_mut().meta = meta(0o755);
    let _ = t.mkdir_p(std::path::Path::new("smelt"), meta(0o755));
    let _ = t.graft(std::path::Path::new(DIR), seed);
    let mut out = Vec::new();
    cpio::write_newc(&t, &mut out, &CpioOptions { skip_root: true })?;
    Ok(out)
}

/// The pristine config initrd (empty `meta-data` and `user-data`).
pub fn pristine(epoch: i64) -> Result<Vec<u8>, InitrdError> {
    build(&Config::pristine(), epoch)
}

/// A config initrd read back: its seed and its build epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigInitrd {
    pub config: Config,
    pub epoch: i64,
}

/// Reads a config initrd; anything but `smelt/`, `smelt/nocloud/` and
/// files and directories below it, or a missing or wrong marker, is
/// [`InitrdError::Foreign`].
pub fn parse(bytes: &[u8]) -> Result<ConfigInitrd, InitrdError> {
    let foreign = |m: String| InitrdError::Foreign(m);
    let entries = cpio::read_newc(bytes)?;
    let marker = entries
        .iter()
        .find(|e| e.name == MARKER)
        .ok_or_else(|| foreign(format!("no {MARKER}")))?;
    if marker.data != MARKER_TEXT {
        return Err(foreign(format!(
            "{MARKER} holds {:?}",
            String::from_utf8_lossy(&marker.data)
        )));
    }
    let prefix = format!("{DIR}/");
    let mut files = BTreeMap::new();
    for e in &entries {
        if e.is_dir() && (e.name == "smelt" || e.name == DIR) {
            continue;
        }
        let Some(rel) = e.name.strip_prefix(&prefix) else {
            return Err(foreign(format!("entry {:?} outside {DIR}/", e.name)));
        };
        if e.name == MARKER || e.is_dir() {
            continue;
        }
        if !e.is_file() {
            return Err(foreign(format!(
                "entry {:?} is not a file or directory",
                e.name
            )));
        }
        files.insert(PathBuf::from(rel), e.data.clone());
    }
    Ok(ConfigInitrd {
        config: Config::from_files(files),
        epoch: i64::from(marker.mtime),
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::tree::testutil::run;

    fn sample() -> Config {
        let mut c = Config {
            meta_data: b"instance-id: a\n".to_vec(),
            user_data: b"#cloud-config\n".to_vec(),
            ..Config::default()
        };
        c.files.insert("sub/dir/f".into(), b"x".to_vec());
        c
    }

    #[test]
    fn pristine_round_trip_and_reproducible() {
        let p = pristine(1_700_000_000).unwrap();
        assert_eq!(p, pristine(1_700_000_000).unwrap());
        let got = parse(&p).unwrap();
        assert_eq!(got.epoch, 1_700_000_000);
        assert!(got.config.is_pristine());
        let b = build(&sample(), 5).unwrap();
        assert_eq!(parse(&b).unwrap().config, sample());
    }

    #[test]
    fn gnu_cpio_lists_the_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("c.img");
        std::fs::write(&f, build(&sample(), 5).unwrap()).unwrap();
        let list = run(Command::new("cpio").args(["-itv", "--quiet", "-F"]).arg(&f));
        let names: Vec<&str> = list
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            [
                "smelt",
                "smelt/nocloud",
                "smelt/nocloud/.smelt-slot",
                "smelt/nocloud/meta-data",
                "smelt/nocloud/sub",
                "smelt/nocloud/sub/dir",
                "smelt/nocloud/sub/dir/f",
                "smelt/nocloud/user-data"
            ],
            "{list}"
        );
        assert!(list.lines().all(|l| l.contains("root     root")), "{list}");
    }

    #[test]
    fn foreign_archives_refused() {
        let mut t = FsTree::new();
        t.insert(
            std::path::Path::new("init"),
            Node::file(Meta::root(0o755), Content::Bytes(b"x"[..].into())),
        )
        .unwrap();
        let mut a = Vec::new();
        cpio::write_newc(&t, &mut a, &CpioOptions::default()).unwrap();
        assert!(
            parse(&a)
                .unwrap_err()
                .to_string()
                .starts_with("not a smelt config initrd: no ")
        );
    }
}
