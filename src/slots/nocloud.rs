//! The FAT volume a config slot holds: label `CIDATA` (in the boot sector
//! and as the root directory's volume-label entry, where util-linux blkid
//! and cloud-init look), the seed's files at its root, every timestamp and
//! the volume id taken from the slot's index entry, so the pristine slot is
//! a function of the index alone.
//!
//! The FAT type follows the size (smelt's FAT writer: FAT12 below 4.1 MB,
//! FAT16 up to the 256 MiB maximum). `BPB_HiddSec` is 0: nothing boots from
//! the slot, and the bytes then do not depend on where the slot sits.
//!
//! [`slot_state`] is the init's rule: a slot whose boot sector lacks the
//! `0x55 0xAA` signature holds no config; one that has it must be a
//! complete, readable FAT, else it is [`SlotState::Invalid`] (which an
//! interrupted `smelt inject` must never leave).

use std::path::{Path, PathBuf};

use crate::formats::fat::read::{FatReadError, FatVolume};
use crate::formats::fat::{FatError, FatOptions, write_fat};
use crate::tree::{Content, FsTree, Meta, Node};

use super::Config;
use super::index::SlotEntry;

/// The volume label (cloud-init's NoCloud looks for `cidata`/`CIDATA`).
pub const LABEL: &str = "CIDATA";
/// The name of the GPT partition covering the slot (docs/slots.md).
pub const PARTITION_NAME: &str = "CIDATA";
/// Its type: Microsoft basic data, what a FAT data partition carries.
pub const PARTITION_TYPE: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";

/// Errors building a slot.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error(
        "the config is {over} bytes larger than the {length}-byte slot; build with `slots: {{size: {suggest}M}}` for a larger slot"
    )]
    TooLarge {
        over: u64,
        length: u64,
        suggest: u64,
    },
    #[error("building the CIDATA FAT: {0}")]
    Fat(#[from] FatError),
}

/// Errors reading a slot.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the slot holds no config (its boot sector has no 0x55 0xAA signature)")]
    Unset,
    #[error(transparent)]
    Fat(#[from] FatReadError),
    #[error("the slot's FAT is labelled {0:?}, not \"CIDATA\"")]
    Label(String),
}

fn fat_options(length: u64, volume_id: u32, mtime: i64) -> FatOptions {
    FatOptions {
        label: LABEL.into(),
        volume_id,
        mtime,
        kind: None,
        size: Some(length),
        hidden_sectors: 0,
    }
}

/// The seed as a tree: files 0644 and directories 0755, root-owned, `mtime`.
pub fn config_tree(config: &Config, mtime: i64) -> FsTree {
    let meta = |mode| Meta {
        mtime,
        ..Meta::root(mode)
    };
    let mut t = FsTree::new();
    t.root_mut().meta = meta(0o755);
    for (path, data) in config.all_files() {
        // Parents first, so they get the directory metadata.
        let mut parent = PathBuf::new();
        for c in path.parent().into_iter().flat_map(Path::components) {
            parent.push(c);
            let _ = t.mkdir_p(&parent, meta(0o755));
        }
        let node = Node::file(meta(0o644), Content::Bytes(data.into()));
        // Paths were checked by Config::check; a clash is a caller bug.
        let _ = t.insert(&path, node);
    }
    t
}

/// The slot bytes for `config` in the slot `entry` describes: exactly
/// `entry.region.length` bytes.
pub fn build(config: &Config, entry: &SlotEntry) -> Result<Vec<u8>, SlotError> {
    build_fat(config, entry.region.length, entry.volume_id, entry.mtime)
}

/// The pristine slot (empty `meta-data` and `user-data`), as the build
/// writes it and `smelt inject --clear` restores it.
pub fn pristine(length: u64, volume_id: u32, mtime: i64) -> Result<Vec<u8>, SlotError> {
    build_fat(&Config::pristine(), length, volume_id, mtime)
}

/// [`pristine`] streamed to `out` (no slot-sized buffer: for writers that
/// stream the whole disk). Writes exactly `length` bytes.
pub fn write_pristine(
    length: u64,
    volume_id: u32,
    mtime: i64,
    out: &mut impl std::io::Write,
) -> Result<(), SlotError> {
    write_slot(&Config::pristine(), length, volume_id, mtime, out)
}

fn build_fat(
    config: &Config,
    length: u64,
    volume_id: u32,
    mtime: i64,
) -> Result<Vec<u8>, SlotError> {
    let mut out = Vec::with_capacity(length as usize);
    write_slot(config, length, volume_id, mtime, &mut out)?;
    debug_assert_eq!(out.len() as u64, length);
    Ok(out)
}

fn write_slot(
    config: &Config,
    length: u64,
    volume_id: u32,
    mtime: i64,
    out: &mut impl std::io::Write,
) -> Result<(), SlotError> {
    let tree = config_tree(config, mtime);
    match write_fat(&tree, &fat_options(length, volume_id, mtime), out) {
        Ok(_) => Ok(()),
        Err(FatError::DoesNotFit {
            need,
            have,
            cluster_size,
            ..
        }) => {
            let over = (need - u64::from(have)) * u64::from(cluster_size);
            let suggest = (length + over).div_ceil(super::index::MIB) + 1;
            Err(SlotError::TooLarge {
                over,
                length,
                suggest,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The seed a slot holds.
pub fn read(bytes: &[u8]) -> Result<Config, ReadError> {
    if bytes.get(510..512) != Some(&[0x55, 0xAA][..]) {
        return Err(ReadError::Unset);
    }
    let vol = FatVolume::parse(bytes)?;
    let label = |l: Option<[u8; 11]>| {
        l.map(|l| String::from_utf8_lossy(&l).trim_end().to_string())
            .unwrap_or_default()
    };
    let contents = vol.files()?;
    for l in [label(vol.label), label(contents.root_label)] {
        if l != LABEL {
            return Err(ReadError::Label(l));
        }
    }
    Ok(Config::from_files(contents.files))
}

/// What a slot holds, as the init sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// No valid boot sector: no config here (mid-inject, or zeroed).
    Unset,
    /// A complete FAT with the pristine seed.
    Pristine,
    /// A complete FAT with this seed.
    Valid(Config),
    /// A valid boot sector over a FAT that cannot be read completely.
    Invalid(String),
}

pub fn slot_state(bytes: &[u8]) -> SlotState {
    match read(bytes) {
        Err(ReadError::Unset) => SlotState::Unset,
        Err(e) => SlotState::Invalid(e.to_string()),
        Ok(c) if c.is_pristine() => SlotState::Pristine,
        Ok(c) => SlotState::Valid(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::index::MIB;

    fn entry(length: u64) -> SlotEntry {
        SlotEntry::nocloud(32 * MIB, length, 0xCAFE_F00D, 1_700_000_000)
    }

    fn sample() -> Config {
        let mut c = Config {
            meta_data: b"instance-id: i-1\n".to_vec(),
            user_data: b"#cloud-config\nhostname: box\n".to_vec(),
            network_config: Some(b"version: 2\n".to_vec()),
            ..Config::default()
        };
        c.files
            .insert("scripts/deep/x.sh".into(), b"echo x\n".to_vec());
        c
    }

    #[test]
    fn pristine_is_reproducible_and_reads_back() {
        let a = pristine(4 * MIB, 1, 0).unwrap();
        assert_eq!(a.len() as u64, 4 * MIB);
        assert_eq!(a, pristine(4 * MIB, 1, 0).unwrap());
        assert_ne!(a, pristine(4 * MIB, 2, 0).unwrap());
        assert_eq!(slot_state(&a), SlotState::Pristine);
        assert_eq!(&a[43..54], b"CIDATA     ");
        let mut streamed = Vec::new();
        write_pristine(4 * MIB, 1, 0, &mut streamed).unwrap();
        assert_eq!(streamed, a);
    }

    #[test]
    fn build_reads_back_every_size() {
        for len in [MIB, 4 * MIB, 64 * MIB, 256 * MIB] {
            let b = build(&sample(), &entry(len)).unwrap();
            assert_eq!(b.len() as u64, len);
            assert_eq!(slot_state(&b), SlotState::Valid(sample()), "{len}");
        }
    }

    #[test]
    fn too_large_says_by_how_much() {
        let mut c = sample();
        c.files.insert("big".into(), vec![7; (MIB + 5000) as usize]);
        let e = build(&c, &entry(MIB)).unwrap_err().to_string();
        assert!(e.starts_with("the config is "), "{e}");
        assert!(
            e.contains("bytes larger than the 1048576-byte slot; build with `slots: {size: 3M}`"),
            "{e}"
        );
    }

    #[test]
    fn zeroed_boot_sector_is_unset_and_damage_is_invalid() {
        let b = build(&sample(), &entry(MIB)).unwrap();
        let mut z = b.clone();
        z[..512].fill(0);
        assert_eq!(slot_state(&z), SlotState::Unset);
        let mut c = build(&sample(), &entry(MIB)).unwrap();
        c[19] = 0xFF; // BPB_TotSec16 beyond the slot
        assert!(
            matches!(slot_state(&c), SlotState::Invalid(_)),
            "{:?}",
            slot_state(&c)
        );
    }
}
