//! The build side of config slots (docs/slots.md): what the ISO and the raw
//! disk reserve, the index that finds it, and the config initrd of the
//! kernel+initrd and kernel+squashfs outputs.
//!
//! Every slot is pristine when built (empty `meta-data` and `user-data`);
//! its FAT volume id derives from the root's sha256 and its timestamps are
//! the build's epoch, so the bytes are reproducible and `smelt inject
//! --clear` rebuilds them from the index alone.

use anyhow::Context;

use super::output::{OutputSet, SlotRecord};
use crate::slots::index::{INDEX_OFFSET, INDEX_SIZE, SlotEntry, SlotIndex};

/// The slot one build gives its media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaSlot {
    /// Bytes: whole MiB (the spec key `slots.size`).
    pub size: u64,
    pub volume_id: u32,
    pub mtime: i64,
}

impl MediaSlot {
    /// A slot of `size` bytes for the media of the root whose sha256 is
    /// `root_sha256`.
    pub fn new(size: u64, root_sha256: &[u8], mtime: i64) -> MediaSlot {
        MediaSlot {
            size,
            volume_id: crate::slots::index::volume_id(root_sha256),
            mtime,
        }
    }

    /// The pristine slot's bytes.
    pub fn pristine(&self) -> anyhow::Result<Vec<u8>> {
        crate::slots::nocloud::pristine(self.size, self.volume_id, self.mtime)
            .context("building the config slot")
    }

    fn entry(&self, offset: u64) -> SlotEntry {
        SlotEntry::nocloud(offset, self.size, self.volume_id, self.mtime)
    }

    /// The index sector for this slot at byte `offset` of the image.
    pub fn index(&self, offset: u64) -> anyhow::Result<[u8; INDEX_SIZE]> {
        SlotIndex {
            entries: vec![self.entry(offset)],
        }
        .to_bytes()
        .context("writing the slot index")
    }

    /// The manifest's record of this slot at byte `offset`.
    pub fn record(&self, offset: u64) -> SlotRecord {
        SlotRecord {
            kind: crate::slots::index::KIND_NOCLOUD_FAT,
            index_offset: Some(INDEX_OFFSET),
            offset,
            length: self.size,
        }
    }

    /// The guest byte ranges a qcow2 keeps allocated: the index and the
    /// slot, so `smelt inject` rewrites them in place.
    pub fn keep_allocated(&self, offset: u64) -> Vec<std::ops::Range<u64>> {
        vec![
            INDEX_OFFSET..INDEX_OFFSET + INDEX_SIZE as u64,
            offset..offset + self.size,
        ]
    }
}

/// `NAME-config.img`, the pristine config initrd a boot loader loads after
/// the initrd (kernel+initrd and kernel+squashfs).
pub fn write_config_initrd(outputs: &mut OutputSet, name: &str, epoch: i64) -> anyhow::Result<()> {
    let file = format!("{name}-config.img");
    if outputs.pending().any(|o| o.name() == file) {
        return Ok(());
    }
    let bytes = crate::slots::initrd::pristine(epoch).context("building the config initrd")?;
    let mut f = outputs.create(&file)?;
    std::io::Write::write_all(&mut f, &bytes)?;
    f.slot = Some(SlotRecord {
        kind: "config-initrd",
        index_offset: None,
        offset: 0,
        length: bytes.len() as u64,
    });
    outputs.finish(f)?;
    Ok(())
}
