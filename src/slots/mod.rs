//! Config slots, the host side (docs/slots.md): where a
//! cloud-init NoCloud seed lives in each artifact, and `smelt inject`,
//! which replaces it without rebuilding.
//!
//! * [`index`]: the 512-byte slot index at byte 24576 of a disk or ISO image.
//! * [`nocloud`]: the FAT "CIDATA" volume a slot holds, built, read back and
//!   judged as the init judges it ([`nocloud::slot_state`]).
//! * [`initrd`]: the config initrd (`NAME-config.img`) of kernel+initrd and
//!   kernel+squashfs outputs.
//! * [`inject`]: rewriting the seed of a raw, ISO, qcow2 or config initrd
//!   artifact, crash-safe in place.
//!
//! What the build calls: [`index::SlotIndex::to_bytes`],
//! [`nocloud::pristine`], [`initrd::pristine`], and
//! [`crate::formats::qcow2::Qcow2Options::keep_allocated`] for the slot and
//! index ranges of a qcow2.
//!
//! Non-goals: the init's side (finding, mounting and applying the seed),
//! shell-script user-data, merging a new config into the old one (inject
//! replaces the whole seed).

pub mod index;
pub mod initrd;
pub mod inject;
pub mod nocloud;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::de::IgnoredAny;

/// The names of a NoCloud seed's own files.
pub const META_DATA: &str = "meta-data";
pub const USER_DATA: &str = "user-data";
pub const NETWORK_CONFIG: &str = "network-config";
/// What user-data must start with (cloud-init's "cloud config data").
pub const CLOUD_CONFIG: &str = "#cloud-config";

/// A NoCloud seed: the three files plus extra files. The default (empty
/// meta-data and user-data, nothing else) is the pristine seed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub meta_data: Vec<u8>,
    pub user_data: Vec<u8>,
    pub network_config: Option<Vec<u8>>,
    /// Extra files by relative path (`/`-separated, directories allowed).
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

/// A config smelt refuses to write.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "user-data is a shell script (starts with \"#!\"): unsupported, use a #cloud-config YAML document"
    )]
    ShellScript,
    #[error(
        "user-data does not start with \"#cloud-config\" (the only user-data format supported)"
    )]
    NotCloudConfig,
    #[error("{file}:{line}:{column}: not valid YAML: {message}")]
    Yaml {
        file: &'static str,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{file} is not UTF-8 (byte {offset})")]
    NotUtf8 { file: &'static str, offset: usize },
    #[error("extra file {path:?}: {reason}")]
    BadPath { path: PathBuf, reason: &'static str },
}

impl Config {
    /// The pristine seed: empty `meta-data` and `user-data`.
    pub fn pristine() -> Config {
        Config::default()
    }

    pub fn is_pristine(&self) -> bool {
        *self == Config::default()
    }

    /// Checks user-data (empty, or `#cloud-config` YAML), meta-data and
    /// network-config (YAML), and the extra files' paths.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.user_data.is_empty() {
            if self.user_data.starts_with(b"#!") {
                return Err(ConfigError::ShellScript);
            }
            let first = self
                .user_data
                .split(|&b| b == b'\n')
                .next()
                .unwrap_or_default();
            if first.trim_ascii_end() != CLOUD_CONFIG.as_bytes() {
                return Err(ConfigError::NotCloudConfig);
            }
            check_yaml(USER_DATA, &self.user_data)?;
        }
        check_yaml(META_DATA, &self.meta_data)?;
        if let Some(n) = &self.network_config {
            check_yaml(NETWORK_CONFIG, n)?;
        }
        for p in self.files.keys() {
            check_path(p)?;
        }
        Ok(())
    }

    /// Every file of the seed by relative path.
    pub fn all_files(&self) -> BTreeMap<PathBuf, &[u8]> {
        let mut out: BTreeMap<PathBuf, &[u8]> = self
            .files
            .iter()
            .map(|(p, d)| (p.clone(), d.as_slice()))
            .collect();
        out.insert(META_DATA.into(), &self.meta_data);
        out.insert(USER_DATA.into(), &self.user_data);
        if let Some(n) = &self.network_config {
            out.insert(NETWORK_CONFIG.into(), n);
        }
        out
    }

    /// The seed from files by relative path; missing meta-data or
    /// user-data read as empty.
    pub fn from_files(mut files: BTreeMap<PathBuf, Vec<u8>>) -> Config {
        Config {
            meta_data: files.remove(Path::new(META_DATA)).unwrap_or_default(),
            user_data: files.remove(Path::new(USER_DATA)).unwrap_or_default(),
            network_config: files.remove(Path::new(NETWORK_CONFIG)),
            files,
        }
    }
}

/// Host files a seed is read from (`smelt inject`'s options).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub user_data: Option<PathBuf>,
    pub meta_data: Option<PathBuf>,
    pub network_config: Option<PathBuf>,
    /// (path in the seed, host file).
    pub files: Vec<(PathBuf, PathBuf)>,
}

/// Largest host file read into a seed: the largest slot.
const MAX_SOURCE: u64 = index::MAX_SLOT;

impl Sources {
    pub fn is_empty(&self) -> bool {
        self.user_data.is_none()
            && self.meta_data.is_none()
            && self.network_config.is_none()
            && self.files.is_empty()
    }

    /// Reads the files; unset meta-data and user-data are empty.
    pub fn load(&self) -> anyhow::Result<Config> {
        use anyhow::Context;
        let read = |p: &Path| -> anyhow::Result<Vec<u8>> {
            let f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_SOURCE + 1), &mut data)
                .with_context(|| format!("reading {}", p.display()))?;
            if data.len() as u64 > MAX_SOURCE {
                anyhow::bail!("{} is larger than the largest slot (256 MiB)", p.display());
            }
            Ok(data)
        };
        let opt = |p: &Option<PathBuf>| p.as_deref().map(read).transpose();
        let mut files = BTreeMap::new();
        for (path, src) in &self.files {
            if files.insert(path.clone(), read(src)?).is_some() {
                anyhow::bail!("--file {} given twice", path.display());
            }
        }
        let config = Config {
            meta_data: opt(&self.meta_data)?.unwrap_or_default(),
            user_data: opt(&self.user_data)?.unwrap_or_default(),
            network_config: opt(&self.network_config)?,
            files,
        };
        config.check()?;
        Ok(config)
    }
}

/// `text` must be a YAML document whose top level is a mapping (or empty).
fn check_yaml(file: &'static str, text: &[u8]) -> Result<(), ConfigError> {
    let s = std::str::from_utf8(text).map_err(|e| ConfigError::NotUtf8 {
        file,
        offset: e.valid_up_to(),
    })?;
    serde_saphyr::from_str::<Option<BTreeMap<String, IgnoredAny>>>(s)
        .map(drop)
        .map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let text = e.without_snippet().to_string();
            let first = text.lines().next().unwrap_or_default();
            let message = match first.rfind(" at line ") {
                Some(i) => &first[..i],
                None => first,
            };
            ConfigError::Yaml {
                file,
                line,
                column,
                message: message.replace('`', "\""),
            }
        })
}

/// An extra file's path: relative, normal components, not a seed file.
fn check_path(p: &Path) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::BadPath {
        path: p.into(),
        reason,
    };
    if p.as_os_str().is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad("must be a relative path without \"..\" or \".\""));
    }
    if [META_DATA, USER_DATA, NETWORK_CONFIG]
        .iter()
        .any(|n| p == Path::new(n))
    {
        return Err(bad("is one of the seed's own files; use its option"));
    }
    if p.to_str().is_none() {
        return Err(bad("is not UTF-8"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_user_data(u: &str) -> Config {
        Config {
            user_data: u.as_bytes().to_vec(),
            ..Config::default()
        }
    }

    #[test]
    fn user_data_rules() {
        assert_eq!(Config::pristine().check(), Ok(()));
        assert_eq!(with_user_data("#cloud-config\n").check(), Ok(()));
        assert_eq!(
            with_user_data("#cloud-config\nhostname: a\nusers: [x]\n").check(),
            Ok(())
        );
        assert_eq!(
            with_user_data("#!/bin/sh\necho hi\n").check(),
            Err(ConfigError::ShellScript)
        );
        assert_eq!(
            with_user_data("hostname: a\n").check(),
            Err(ConfigError::NotCloudConfig)
        );
        let e = with_user_data("#cloud-config\nhostname: a\n  users: [\n")
            .check()
            .unwrap_err();
        match &e {
            ConfigError::Yaml { file, line, .. } => assert_eq!((*file, *line), ("user-data", 3)),
            other => panic!("{other}"),
        }
        assert!(e.to_string().starts_with("user-data:3:"), "{e}");
        let e = with_user_data("#cloud-config\n- a list\n")
            .check()
            .unwrap_err();
        assert!(
            e.to_string().starts_with("user-data:2:1: not valid YAML"),
            "{e}"
        );
    }

    #[test]
    fn extra_paths_checked() {
        let mut c = Config::default();
        c.files.insert("../x".into(), vec![]);
        assert!(c.check().is_err());
        let mut c = Config::default();
        c.files.insert("user-data".into(), vec![]);
        assert!(c.check().is_err());
        let mut c = Config::default();
        c.files.insert("scripts/a.sh".into(), vec![1]);
        assert_eq!(c.check(), Ok(()));
        assert_eq!(
            Config::from_files(
                c.all_files()
                    .into_iter()
                    .map(|(p, d)| (p, d.to_vec()))
                    .collect()
            ),
            c
        );
    }
}

/// The pristine bytes the build writes, pinned: a change here changes every
/// artifact's bytes and must be deliberate.
#[cfg(test)]
mod golden {
    use crate::digest::Digest;

    #[test]
    fn pristine_bytes_are_pinned() {
        let idx = super::index::SlotIndex {
            entries: vec![super::index::SlotEntry::nocloud(
                32 << 20,
                4 << 20,
                0xC1DA_7A00,
                1_700_000_000,
            )],
        };
        let got = [
            Digest::of(&idx.to_bytes().unwrap()).to_string(),
            Digest::of(&super::nocloud::pristine(4 << 20, 0xC1DA_7A00, 1_700_000_000).unwrap())
                .to_string(),
            Digest::of(&super::initrd::pristine(1_700_000_000).unwrap()).to_string(),
        ];
        // The index hash is also what Python's struct + zlib.crc32 give for
        // the layout in docs/slots.md (checked when it was pinned).
        assert_eq!(
            got,
            [
                "sha256:cf250e2c8dac694c08398951f619404de189e32f9e501dc36f9ff9888b88a8b8",
                "sha256:5daa4e89a3fbbcee2f1d1d1415c09f1577fba95118c73f13df2305eaad560c3a",
                "sha256:6a05a937741f5951f52ad6b7eabcae6c4f627470ab84c2fad102475cede7e8a8"
            ]
        );
    }
}
