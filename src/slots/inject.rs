//! `smelt inject`: replace the seed of an artifact smelt wrote.
//!
//! Artifacts recognised, by their first bytes:
//! * qcow2 (`QFI\xfb`): the slot index and slot are read and written
//!   through the L1/L2 tables ([`Qcow2Map`]); the writer kept those
//!   clusters allocated, so nothing is ever allocated here.
//! * a config initrd (newc `070701` with smelt's marker): rebuilt whole,
//!   written to a temporary file in the same directory and renamed.
//! * anything else must be a raw disk or ISO image with a valid slot index
//!   at byte 24576.
//!
//! In place, a slot is rewritten with the inject protocol of docs/slots.md: (1) zero the
//! FAT boot sector, fsync; (2) write the rest of the new FAT, fsync; (3)
//! read it back and compare; (4) write the new boot sector, fsync. The
//! init (and [`super::nocloud::slot_state`]) ignores a slot whose boot
//! sector has no signature, so a kill at any point leaves the old config,
//! no config, or the new one. Every check (config, size, artifact) runs
//! before the first write, so a refused inject leaves the file untouched.
//! An exclusive `flock` keeps two injects from interleaving.
//!
//! The new slot is built in memory (at most 256 MiB, the largest slot).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::Config;
use super::index::{INDEX_OFFSET, INDEX_SIZE, SlotEntry, SlotIndex};
use super::initrd::{self, ConfigInitrd};
use super::nocloud::{self, SlotState};
use crate::formats::qcow2::{HostExtent, Qcow2Map};

/// Bytes copied per read when copying or streaming an artifact (1 MiB:
/// large enough that a 1 GiB image is a thousand reads).
const COPY_BUFFER: usize = 1 << 20;
const QCOW2_MAGIC: &[u8] = b"QFI\xfb";
const CPIO_MAGIC: &[u8] = b"070701";

/// Where the injected artifact goes.
pub enum Mode<'a> {
    /// Rewrite the artifact itself (crash-safe, see the module doc).
    InPlace,
    /// Write a copy with the new seed to this path (temporary file + rename).
    Copy(&'a Path),
    /// Stream the artifact with the new seed to a writer.
    Stream(&'a mut dyn Write),
}

/// What kind of artifact holds the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A raw disk or ISO image (slot index at byte 24576).
    Image,
    Qcow2,
    ConfigInitrd,
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArtifactKind::Image => "raw disk or ISO image",
            ArtifactKind::Qcow2 => "qcow2 image",
            ArtifactKind::ConfigInitrd => "config initrd",
        })
    }
}

/// An artifact opened and recognised.
enum Opened {
    /// A disk image: the slot entry and where its bytes are in the file.
    Disk {
        kind: ArtifactKind,
        entry: SlotEntry,
        extents: Vec<HostExtent>,
    },
    Initrd(ConfigInitrd),
}

impl Shown {
    /// `{"kind", "slot": {offset, length, volume_id, mtime} | null,
    /// "state": "unset" | "pristine" | "config" | "invalid", "error",
    /// "files": {path: text, or {"bytes": n} when not UTF-8}}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let slot = self.slot.as_ref().map(|e| {
            json!({"offset": e.region.offset, "length": e.region.length,
                   "volume_id": e.volume_id, "mtime": e.mtime})
        });
        let (state, error, config) = match &self.state {
            SlotState::Unset => ("unset", None, None),
            SlotState::Pristine => ("pristine", None, Some(Config::pristine())),
            SlotState::Valid(c) => ("config", None, Some(c.clone())),
            SlotState::Invalid(why) => ("invalid", Some(why.clone()), None),
        };
        let files: serde_json::Map<String, serde_json::Value> = config
            .iter()
            .flat_map(|c| c.all_files())
            .map(|(p, d)| {
                let v = match std::str::from_utf8(d) {
                    Ok(t) => json!(t),
                    Err(_) => json!({"bytes": d.len()}),
                };
                (p.display().to_string(), v)
            })
            .collect();
        json!({"kind": self.kind.to_string(), "slot": slot, "state": state,
               "error": error, "files": files})
    }

    /// A human-readable report: the artifact, the slot, the state, then
    /// each file with its size and, when it is text, its contents.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("artifact: {}", self.kind)];
        if let Some(e) = &self.slot {
            let r = e.region;
            out.push(format!(
                "slot: {} at bytes {}..{} ({} MiB), volume id {:08X}",
                e.kind,
                r.offset,
                r.offset + r.length,
                r.length >> 20,
                e.volume_id
            ));
        }
        let config = match &self.state {
            SlotState::Unset => {
                out.push("state: no config (boot sector not valid: an interrupted inject)".into());
                return out;
            }
            SlotState::Invalid(why) => {
                out.push(format!("state: INVALID: {why}"));
                return out;
            }
            SlotState::Pristine => {
                out.push("state: pristine (empty meta-data and user-data)".into());
                return out;
            }
            SlotState::Valid(c) => c,
        };
        out.push("state: config".into());
        for (path, data) in config.all_files() {
            out.push(format!("==> {} ({} bytes) <==", path.display(), data.len()));
            match std::str::from_utf8(data) {
                Ok(text) => out.extend(text.lines().map(String::from)),
                Err(_) => out.push("(binary)".into()),
            }
        }
        out
    }
}

/// What [`show`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    pub kind: ArtifactKind,
    /// The slot (not for a config initrd).
    pub slot: Option<SlotEntry>,
    pub state: SlotState,
}

/// Recognises the artifact in `file` (see the module doc).
fn open(file: &mut File) -> anyhow::Result<Opened> {
    let len = file.metadata()?.len();
    let mut head = [0u8; 8];
    let n = file.read_at(&mut head, 0)?;
    if head[..n].starts_with(QCOW2_MAGIC) {
        return open_qcow2(file);
    }
    if head[..n].starts_with(CPIO_MAGIC) {
        if len > initrd::MAX_SIZE {
            bail!("a cpio archive of {len} bytes is not a config initrd smelt wrote");
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes)?;
        return Ok(Opened::Initrd(initrd::parse(&bytes)?));
    }
    let mut raw = [0u8; INDEX_SIZE];
    file.read_exact_at(&mut raw, INDEX_OFFSET)
        .map_err(|_| anyhow::anyhow!("not an artifact smelt wrote: {len} bytes, too short for a slot index at byte {INDEX_OFFSET}"))?;
    let index = SlotIndex::parse(&raw).with_context(|| {
        format!(
            "not an artifact smelt wrote with a config slot (nor a qcow2 or config initrd); at byte {INDEX_OFFSET}"
        )
    })?;
    let entry = nocloud_entry(&index)?;
    let r = entry.region;
    if r.end().is_none_or(|end| end > len) {
        bail!(
            "the slot at bytes {}..{} lies past the end of the {len}-byte image (truncated?)",
            r.offset,
            r.offset + r.length
        );
    }
    let extents = vec![HostExtent {
        guest: r.offset,
        host: r.offset,
        len: r.length,
    }];
    Ok(Opened::Disk {
        kind: ArtifactKind::Image,
        entry,
        extents,
    })
}

fn nocloud_entry(index: &SlotIndex) -> anyhow::Result<SlotEntry> {
    index
        .nocloud()
        .cloned()
        .context("the slot index has no nocloud-fat slot")
}

fn open_qcow2(file: &mut File) -> anyhow::Result<Opened> {
    let map = Qcow2Map::open(file)?;
    let at = map
        .host_offset(file, INDEX_OFFSET)
        .context("reading the slot index")?;
    let mut raw = [0u8; INDEX_SIZE];
    file.read_exact_at(&mut raw, at)?;
    let index = SlotIndex::parse(&raw).with_context(|| {
        format!("not a qcow2 smelt wrote with a config slot; guest byte {INDEX_OFFSET}")
    })?;
    let entry = nocloud_entry(&index)?;
    let r = entry.region;
    let end = r
        .end()
        .filter(|&e| e <= map.virtual_size())
        .with_context(|| {
            format!(
                "the slot lies past the end of the {}-byte disk",
                map.virtual_size()
            )
        })?;
    let extents = map.host_extents(file, r.offset..end).context(
        "mapping the slot's clusters (smelt keeps them allocated; was the image rewritten?)",
    )?;
    Ok(Opened::Disk {
        kind: ArtifactKind::Qcow2,
        entry,
        extents,
    })
}

/// Reads the slot's bytes through its extents.
fn read_slot(file: &File, entry: &SlotEntry, extents: &[HostExtent]) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; entry.region.length as usize];
    for e in extents {
        let at = (e.guest - entry.region.offset) as usize;
        file.read_exact_at(&mut buf[at..at + e.len as usize], e.host)
            .with_context(|| format!("reading the slot at byte {}", e.host))?;
    }
    Ok(buf)
}

/// Writes `data`, the slot's bytes from slot offset `start`, through the
/// extents.
fn write_slot(
    file: &File,
    entry: &SlotEntry,
    extents: &[HostExtent],
    start: u64,
    data: &[u8],
) -> anyhow::Result<()> {
    let end = start + data.len() as u64;
    for e in extents {
        let (es, ee) = (
            e.guest - entry.region.offset,
            e.guest - entry.region.offset + e.len,
        );
        let (s, t) = (es.max(start), ee.min(end));
        if s < t {
            let host = e.host + (s - es);
            file.write_all_at(&data[(s - start) as usize..(t - start) as usize], host)
                .with_context(|| format!("writing the slot at byte {host}"))?;
        }
    }
    Ok(())
}

/// What the slot holds now.
pub fn show(path: &Path) -> anyhow::Result<Shown> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let shown = match open(&mut file).with_context(|| path.display().to_string())? {
        Opened::Disk {
            kind,
            entry,
            extents,
        } => {
            let bytes = read_slot(&file, &entry, &extents)?;
            Shown {
                kind,
                state: nocloud::slot_state(&bytes),
                slot: Some(entry),
            }
        }
        Opened::Initrd(c) => Shown {
            kind: ArtifactKind::ConfigInitrd,
            slot: None,
            state: if c.config.is_pristine() {
                SlotState::Pristine
            } else {
                SlotState::Valid(c.config)
            },
        },
    };
    Ok(shown)
}

/// What [`inject`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    pub kind: ArtifactKind,
    /// Bytes of seed written (the slot, or the whole config initrd).
    pub bytes: u64,
}

/// Replaces the seed of the artifact at `path` with `config` (the pristine
/// [`Config::default`] restores the build's bytes exactly), as `mode` says.
/// On error the artifact is unchanged.
pub fn inject(path: &Path, config: &Config, mode: Mode) -> anyhow::Result<Injected> {
    config.check()?;
    let in_place = matches!(mode, Mode::InPlace);
    let mut file = OpenOptions::new()
        .read(true)
        .write(in_place)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if in_place {
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .with_context(|| format!("{} is being injected by another process", path.display()))?;
    }
    let opened = open(&mut file).with_context(|| path.display().to_string())?;
    let (kind, entry, extents, new) = match opened {
        Opened::Initrd(old) => {
            let bytes = initrd::build(config, old.epoch)?;
            let n = bytes.len() as u64;
            match mode {
                Mode::InPlace => replace_file(path, path, &bytes)?,
                Mode::Copy(out) => replace_file(path, out, &bytes)?,
                Mode::Stream(w) => w.write_all(&bytes).context("writing the output")?,
            }
            return Ok(Injected {
                kind: ArtifactKind::ConfigInitrd,
                bytes: n,
            });
        }
        Opened::Disk {
            kind,
            entry,
            extents,
        } => {
            let new = nocloud::build(config, &entry)?;
            (kind, entry, extents, new)
        }
    };
    match mode {
        Mode::InPlace => rewrite_in_place(&file, &entry, &extents, &new)?,
        Mode::Copy(out) => copy_with_slot(&mut file, path, out, &entry, &extents, &new)?,
        Mode::Stream(w) => stream_with_slot(&file, w, &entry, &extents, &new)?,
    }
    Ok(Injected {
        kind,
        bytes: new.len() as u64,
    })
}

/// The protocol's four steps (see the module doc).
fn rewrite_in_place(
    file: &File,
    entry: &SlotEntry,
    extents: &[HostExtent],
    new: &[u8],
) -> anyhow::Result<()> {
    let sync = || file.sync_data().context("fsync");
    write_slot(file, entry, extents, 0, &[0u8; 512])?;
    sync()?;
    write_slot(file, entry, extents, 512, &new[512..])?;
    sync()?;
    let back = read_slot(file, entry, extents)?;
    if let Some(i) = back[512..]
        .iter()
        .zip(&new[512..])
        .position(|(a, b)| a != b)
    {
        bail!(
            "the slot read back differs from what was written at slot byte {} (the slot is left without config)",
            512 + i
        );
    }
    write_slot(file, entry, extents, 0, &new[..512])?;
    sync()
}

/// A temporary file beside `dest` with `src`'s permissions.
fn temp_beside(src: &Path, dest: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".smelt-inject")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let perms = std::fs::metadata(src)?.permissions();
    tmp.as_file().set_permissions(perms)?;
    Ok(tmp)
}

fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> anyhow::Result<()> {
    tmp.as_file().sync_all().context("fsync")?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming to {}", dest.display()))?;
    Ok(())
}

/// `bytes` as the new content of `dest` (temporary file + rename).
fn replace_file(src: &Path, dest: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = temp_beside(src, dest)?;
    tmp.write_all(bytes).context("writing the temporary file")?;
    persist(tmp, dest)
}

fn copy_with_slot(
    file: &mut File,
    src: &Path,
    dest: &Path,
    entry: &SlotEntry,
    extents: &[HostExtent],
    new: &[u8],
) -> anyhow::Result<()> {
    let tmp = temp_beside(src, dest)?;
    file.rewind()?;
    std::io::copy(file, &mut tmp.as_file())
        .with_context(|| format!("copying {}", src.display()))?;
    write_slot(tmp.as_file(), entry, extents, 0, new)?;
    persist(tmp, dest)
}

/// Copies the artifact to `out`, the slot's bytes replaced on the way.
fn stream_with_slot(
    file: &File,
    out: &mut dyn Write,
    entry: &SlotEntry,
    extents: &[HostExtent],
    new: &[u8],
) -> anyhow::Result<()> {
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut pos = 0u64;
    while pos < len {
        let n = (len - pos).min(COPY_BUFFER as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)
            .with_context(|| format!("reading at byte {pos}"))?;
        for e in extents {
            let (s, t) = (e.host.max(pos), (e.host + e.len).min(pos + n as u64));
            if s < t {
                let from = (e.guest - entry.region.offset + (s - e.host)) as usize;
                buf[(s - pos) as usize..(t - pos) as usize]
                    .copy_from_slice(&new[from..from + (t - s) as usize]);
            }
        }
        out.write_all(&buf[..n]).context("writing the output")?;
        pos += n as u64;
    }
    out.flush().context("writing the output")?;
    Ok(())
}
