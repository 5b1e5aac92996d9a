//! ISO 9660 (ECMA-119 4th edition) image writer with Rock Ridge, El Torito
//! and isohybrid, for boot media: `dd` the same bytes to a CD or a USB
//! stick and it boots under BIOS (isolinux) and UEFI (an EFI System
//! Partition image).
//!
//! Layout, in 2048-byte sectors ([`Lba`]), all computed before the first
//! byte is written ([`layout`]) so that [`write_iso`] only appends:
//!
//! | sectors | content |
//! | --- | --- |
//! | 0-15 | System Area: zeros, or the isohybrid MBR (+ primary GPT) ([`hybrid`]) |
//! | 16.. | Primary Volume Descriptor, El Torito Boot Record, Terminator |
//! | | the boot catalog, when it is not a file in the tree (EFI only) |
//! | | Type L then Type M path table |
//! | | directory extents, in path table order |
//! | | Rock Ridge continuation areas (`CE`) |
//! | | file data, in [`FsTree::walk`] order, each hardlinked inode once |
//! | | isohybrid only: padding to a whole 1 MiB cylinder, backup GPT last |
//!
//! Names: the primary hierarchy uses interchange level 1 identifiers
//! ([`names`]); Rock Ridge ([`rrip`]) carries the real names (`NM`), modes,
//! owners and link counts (`PX`), devices (`PN`), symlinks (`SL`) and times
//! (`TF`), so Linux, libisofs and isoinfo `-R` see the tree as it is.
//! Every timestamp (volume descriptors, records, `TF`) is
//! [`IsoOptions::mtime`]: one clock, as `SOURCE_DATE_EPOCH` asks.
//!
//! Boot ([`eltorito`]): the BIOS image gets a no-emulation default entry,
//! optionally with the boot info table patched into its bytes as they are
//! written (the image is read into memory for that, up to
//! [`MAX_BOOT_IMAGE`]); the EFI image, a FAT volume that must be a file in
//! the tree, gets a platform 0xEF section (or the default entry, without a
//! BIOS image). The catalog is a file at [`BiosBoot::catalog`].
//!
//! Non-goals and limits: files of 4 GiB or more (multi-extent records are
//! not written: error); Joliet, ISO 9660:1999, level 3; deep-directory
//! relocation (`RE`/`CL`: the hierarchy is written as deep as it is, which
//! strict level-1 readers may refuse beyond 8 levels); xattrs; emulated
//! (floppy/hard disk) boot entries; APM/HFS+ for Macs; more than 65535
//! directories (path table parent numbers are 16 bits: error).

#[cfg(test)]
mod boot_tests;
pub mod eltorito;
pub mod hybrid;
pub mod names;
mod plan;
pub mod records;
pub mod rrip;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use self::eltorito::{BootEntry, PLATFORM_EFI, PLATFORM_X86};
use self::plan::{Plan, Rec, record_len};
pub use self::records::Lba;
use self::records::{DirRecord, PrimaryVolume, SECTOR, SYSTEM_AREA_SECTORS};
use super::{IO_BUFFER, WriteError, copy_content};
use crate::formats::gpt::Guid;
use crate::tree::FsTree;

/// The largest BIOS boot image read into memory to patch its boot info
/// table (isolinux.bin is ~40 KiB, GRUB's eltorito.img ~30 KiB).
pub const MAX_BOOT_IMAGE: u64 = 16 << 20;
/// The isolinux hybrid signature at offset 64 of isolinux.bin (>= 3.72),
/// which isohybrid.c and xorriso check before writing an isohybrid MBR.
const ISOLINUX_HYBRID_MAGIC: [u8; 4] = [0xFB, 0xC0, 0x78, 0x70];
/// Longest volume identifier (ECMA-119 §8.4.6).
const MAX_VOLUME_ID: usize = 32;

/// Options for [`layout`] and [`write_iso`].
#[derive(Clone, Debug)]
pub struct IsoOptions {
    /// Volume Identifier: up to 32 d-characters (`A-Z`, `0-9`, `_`).
    pub volume_id: String,
    /// Every timestamp, seconds since the Unix epoch.
    pub mtime: i64,
    pub bios: Option<BiosBoot>,
    pub efi: Option<EfiBoot>,
    pub hybrid: Option<Hybrid>,
    /// Source of every GUID and the MBR disk signature (e.g. a content hash).
    pub uuid_seed: [u8; 32],
}

/// An El Torito x86 no-emulation entry (isolinux, GRUB eltorito.img).
#[derive(Clone, Debug)]
pub struct BiosBoot {
    /// Path in the tree of the boot image, e.g. `isolinux/isolinux.bin`.
    pub image: PathBuf,
    /// Path of the boot catalog, created by the writer: `isolinux/boot.cat`.
    pub catalog: PathBuf,
    /// 512-byte sectors the BIOS loads (4 for isolinux).
    pub load_sectors: u16,
    /// Patch the boot info table into bytes 8..64 (isolinux needs it).
    pub boot_info_table: bool,
}

/// An El Torito EFI (platform 0xEF) no-emulation entry.
#[derive(Clone, Debug)]
pub struct EfiBoot {
    /// Path in the tree of a FAT image holding `\EFI\BOOT\BOOTX64.EFI`.
    pub image: PathBuf,
}

/// isohybrid: an MBR, and optionally a GPT, in the System Area. Without a
/// BIOS entry the boot image LBA at MBR offset 432 is 0 (pass boot code
/// that does not need it, or zeros, for a UEFI-only stick).
#[derive(Clone, Debug)]
pub struct Hybrid {
    /// MBR boot code (syslinux's isohdpfx.bin); bytes 0..432 are used.
    pub mbr: Vec<u8>,
    /// Also write a GPT (primary at 512-byte LBA 1, backup at the end).
    pub gpt: bool,
    /// GPT partitions after the ESP, in this order (needs `gpt`): for
    /// example a config slot stored as a file of the image, so that a USB
    /// stick written from the ISO shows it as a partition.
    pub partitions: Vec<HybridPartition>,
    /// Bytes placed in the System Area at these byte offsets, over what
    /// the MBR and GPT left zero (e.g. smelt's config slot index at 24576,
    /// after the 17 KiB of primary GPT); an overlap is an error.
    pub system_area: Vec<(u64, Vec<u8>)>,
}

/// An extra partition of the hybrid GPT. Its unique GUID derives from the
/// image's `uuid_seed` and `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HybridPartition {
    /// `PartitionTypeGUID`, e.g. [`Guid::MICROSOFT_BASIC_DATA`].
    pub type_guid: Guid,
    /// `PartitionName`: at most 36 UTF-16 units, unique among the extras.
    pub name: String,
    pub span: PartitionSpan,
}

/// What an extra hybrid partition covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionSpan {
    /// A regular file of the tree, by path: its extent, rounded up to whole
    /// 512-byte sectors (at least one). Files are contiguous in the image.
    File(PathBuf),
    /// Bytes of the image; both multiples of 512 and `length` not zero
    /// (find a file's place with [`layout`]).
    Bytes { offset: u64, length: u64 },
}

/// A run of sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub lba: Lba,
    /// Bytes.
    pub len: u64,
}

/// A named metadata or padding region of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub name: &'static str,
    pub extent: Extent,
}

/// Where everything is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoLayout {
    /// Bytes of the image.
    pub size: u64,
    /// Every regular file by path in the tree (hardlinks share an extent;
    /// empty files have sector 0). Includes the boot catalog.
    pub files: BTreeMap<PathBuf, Extent>,
    /// Regions that are not files: system area, descriptors, path tables,
    /// directories, continuation areas, padding (free, except for the
    /// backup GPT in its last 16.5 KiB).
    pub regions: Vec<Region>,
}

/// Errors from [`layout`] and [`write_iso`].
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("volume id {id:?}: {reason}")]
    VolumeId { id: String, reason: &'static str },
    #[error("{path:?}: {reason}")]
    Boot { path: PathBuf, reason: String },
    #[error("an isohybrid GPT needs an EFI boot image for its EFI System Partition")]
    GptWithoutEfi,
    #[error("hybrid GPT partition {name:?}: {reason}")]
    HybridPartition { name: String, reason: String },
    #[error("isohybrid partition tables: {0}")]
    Gpt(#[from] crate::formats::gpt::GptError),
    #[error(
        "{len} bytes at System Area byte {offset}: outside the 32 KiB area or over the MBR/GPT"
    )]
    SystemArea { offset: u64, len: usize },
    #[error("the isohybrid MBR template has {0} bytes, 432 are needed")]
    MbrTooShort(usize),
    #[error("more than 65535 directories (ISO 9660 path table limit)")]
    TooManyDirectories,
    #[error("the image would need {sectors} sectors, more than ISO 9660's 32-bit sector numbers")]
    ImageTooLarge { sectors: u64 },
}

fn validate(opts: &IsoOptions) -> Result<(), IsoError> {
    let bad = |reason| IsoError::VolumeId {
        id: opts.volume_id.clone(),
        reason,
    };
    if opts.volume_id.len() > MAX_VOLUME_ID {
        return Err(bad("longer than 32 characters"));
    }
    if !opts.volume_id.bytes().all(names::is_d_char) {
        return Err(bad(
            "only A-Z, 0-9 and _ are allowed (ECMA-119 d-characters)",
        ));
    }
    if let Some(h) = &opts.hybrid
        && h.mbr.len() < hybrid::MBR_CODE
    {
        return Err(IsoError::MbrTooShort(h.mbr.len()));
    }
    Ok(())
}

/// The layout [`write_iso`] would produce; reads no file contents.
pub fn layout(tree: &FsTree, opts: &IsoOptions) -> Result<IsoLayout, IsoError> {
    validate(opts)?;
    Ok(to_layout(&Plan::new(tree, opts)?))
}

fn to_layout(plan: &Plan) -> IsoLayout {
    IsoLayout {
        size: u64::from(plan.total) * u64::from(SECTOR),
        files: plan.file_extents(),
        regions: plan.regions.clone(),
    }
}

/// Writes the image to `out` front to back.
pub fn write_iso(
    tree: &FsTree,
    opts: &IsoOptions,
    out: &mut impl Write,
) -> Result<IsoLayout, IsoError> {
    validate(opts)?;
    let plan = Plan::new(tree, opts)?;
    let mut w = Out {
        w: BufWriter::with_capacity(IO_BUFFER, out),
        pos: 0,
    };
    let hyb = hybrid_plan(&plan, opts)?;
    let area = (SYSTEM_AREA_SECTORS * SECTOR) as usize;
    let mut system = match &hyb {
        Some(h) => h.system_area(area)?,
        None => vec![0; area],
    };
    for (at, bytes) in opts.hybrid.iter().flat_map(|h| &h.system_area) {
        let range = usize::try_from(*at)
            .ok()
            .and_then(|a| Some(a..a.checked_add(bytes.len())?))
            .filter(|r| r.end <= area);
        match range {
            Some(r) if system[r.clone()].iter().all(|&b| b == 0) => {
                system[r].copy_from_slice(bytes)
            }
            _ => {
                return Err(IsoError::SystemArea {
                    offset: *at,
                    len: bytes.len(),
                });
            }
        }
    }
    w.put(&system)?;
    write_descriptors(&plan, opts, &mut w)?;
    if (opts.bios.is_some() || opts.efi.is_some()) && plan.catalog_file.is_none() {
        w.put(&catalog_bytes(&plan, opts))?;
    }
    write_path_tables(&plan, &mut w)?;
    for d in &plan.dirs {
        w.pad_to(d.lba)?;
        w.put(&dir_bytes(
            &plan,
            &d.records,
            d.sectors,
            records::record_date(opts.mtime),
        ))?;
    }
    w.pad_to(plan.ce_start)?;
    w.put(&continuation_bytes(&plan))?;
    for (i, f) in plan.files.iter().enumerate() {
        if f.content.is_empty() {
            continue;
        }
        w.pad_to(f.lba)?;
        write_file(&plan, opts, i, &mut w)?;
    }
    w.pad_to(plan.data_end)?;
    let end = u64::from(plan.total) * u64::from(SECTOR);
    match hyb.filter(|h| h.gpt) {
        Some(h) => {
            let backup = h.backup_gpt()?;
            w.zeros(end - backup.len() as u64 - w.pos)?;
            w.put(&backup)?;
        }
        None => w.zeros(end - w.pos)?,
    }
    w.w.flush().map_err(meta_io)?;
    Ok(to_layout(&plan))
}

fn meta_io(source: std::io::Error) -> IsoError {
    IsoError::Write(WriteError::Io {
        path: "(ISO 9660 metadata)".into(),
        source,
    })
}

/// The output and the byte position reached.
struct Out<W: Write> {
    w: BufWriter<W>,
    pos: u64,
}

impl<W: Write> Out<W> {
    fn put(&mut self, b: &[u8]) -> Result<(), IsoError> {
        self.w.write_all(b).map_err(meta_io)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, n: u64) -> Result<(), IsoError> {
        crate::formats::fat::write_zeros(&mut self.w, n).map_err(meta_io)?;
        self.pos += n;
        Ok(())
    }

    /// Zero-fills up to sector `lba`; the plan only ever moves forward.
    fn pad_to(&mut self, lba: Lba) -> Result<(), IsoError> {
        let target = lba.offset();
        debug_assert!(target >= self.pos, "layout goes backwards at {lba:?}");
        self.zeros(target.saturating_sub(self.pos))
    }
}

fn hybrid_plan<'a>(
    plan: &Plan,
    opts: &'a IsoOptions,
) -> Result<Option<hybrid::HybridPlan<'a>>, IsoError> {
    let Some(h) = opts.hybrid.as_ref() else {
        return Ok(None);
    };
    let boot_image = plan
        .bios_file
        .map_or(0, |i| plan.files[i].lba.sector512() as u32);
    let esp = plan.efi_file.map(|i| {
        let f = &plan.files[i];
        (f.lba.sector512(), f.content.len().div_ceil(512).max(1))
    });
    Ok(Some(hybrid::HybridPlan {
        code: &h.mbr,
        boot_image,
        esp,
        total: u64::from(plan.total) * 4,
        gpt: h.gpt,
        extra: extra_partitions(plan, h)?,
        seed: &opts.uuid_seed,
    }))
}

/// The caller's extra GPT partitions in 512-byte sectors.
fn extra_partitions(plan: &Plan, h: &Hybrid) -> Result<Vec<hybrid::ExtraPartition>, IsoError> {
    if h.partitions.is_empty() {
        return Ok(Vec::new());
    }
    let files = plan.file_extents();
    h.partitions
        .iter()
        .map(|p| {
            let bad = |reason: String| IsoError::HybridPartition {
                name: p.name.clone(),
                reason,
            };
            if !h.gpt {
                return Err(bad("extra partitions need the hybrid GPT".into()));
            }
            let (first, sectors) = match &p.span {
                PartitionSpan::File(path) => {
                    let e = files.get(path).ok_or_else(|| {
                        bad(format!("{} is not a file of the tree", path.display()))
                    })?;
                    (e.lba.sector512(), e.len.div_ceil(512).max(1))
                }
                PartitionSpan::Bytes { offset, length } => {
                    if offset % 512 != 0 || length % 512 != 0 || *length == 0 {
                        return Err(bad(format!(
                            "bytes {offset}+{length} are not whole 512-byte sectors"
                        )));
                    }
                    (offset / 512, length / 512)
                }
            };
            Ok(hybrid::ExtraPartition {
                type_guid: p.type_guid,
                name: p.name.clone(),
                first,
                sectors,
            })
        })
        .collect()
}

fn write_descriptors<W: Write>(
    plan: &Plan,
    opts: &IsoOptions,
    w: &mut Out<W>,
) -> Result<(), IsoError> {
    let root = &plan.dirs[0];
    let mut root_record = Vec::with_capacity(34);
    DirRecord {
        extent: root.lba,
        data_length: root.sectors * SECTOR,
        date: records::record_date(opts.mtime),
        flags: records::FLAG_DIRECTORY,
        identifier: &[0],
        system_use: &[],
    }
    .encode(&mut root_record);
    let pvd = PrimaryVolume {
        volume_id: &opts.volume_id,
        space_size: plan.total,
        path_table_size: plan.path_table_size,
        l_path_table: plan.l_path,
        m_path_table: plan.m_path,
        root_record: &root_record,
        time: opts.mtime,
    };
    w.put(&pvd.encode())?;
    if opts.bios.is_some() || opts.efi.is_some() {
        w.put(&records::boot_record(plan.catalog))?;
    }
    w.put(&records::terminator())
}

fn write_path_tables<W: Write>(plan: &Plan, w: &mut Out<W>) -> Result<(), IsoError> {
    for (lba, big) in [(plan.l_path, false), (plan.m_path, true)] {
        w.pad_to(lba)?;
        let mut t = Vec::with_capacity(plan.path_table_size as usize);
        for d in &plan.dirs {
            // Directory numbers start at 1 (ECMA-119 §9.4.4); checked < 65536.
            let parent = (d.parent + 1) as u16;
            records::path_record(&d.ident, d.lba, parent, big, &mut t);
        }
        w.put(&t)?;
    }
    Ok(())
}

/// Bytes of continuation area `i` of `r`, with its `CE` to the next one.
fn area_bytes(r: &Rec, i: usize) -> Vec<u8> {
    let mut b = r.susp.areas[i].concat();
    if let Some(&(lba, off)) = r.areas.get(i + 1) {
        b.extend(rrip::ce(lba.0, off, area_bytes(r, i + 1).len() as u32));
    }
    b
}

/// A directory's extent: its records, none crossing a sector boundary.
fn dir_bytes(plan: &Plan, recs: &[Rec], sectors: u32, date: [u8; 7]) -> Vec<u8> {
    let sector = SECTOR as usize;
    let mut out = Vec::with_capacity(sectors as usize * sector);
    for r in recs {
        if out.len() % sector + record_len(r) > sector {
            out.resize(out.len().next_multiple_of(sector), 0);
        }
        let mut su = r.susp.inline.concat();
        if let Some(&(lba, off)) = r.areas.first() {
            su.extend(rrip::ce(lba.0, off, area_bytes(r, 0).len() as u32));
        }
        let (extent, data_length, flags) = plan.extent_of(r.target);
        DirRecord {
            extent,
            data_length,
            date,
            flags,
            identifier: &r.ident,
            system_use: &su,
        }
        .encode(&mut out);
    }
    out.resize(sectors as usize * sector, 0);
    out
}

/// All continuation areas, placed as [`Plan`] decided.
fn continuation_bytes(plan: &Plan) -> Vec<u8> {
    let mut out = vec![0u8; (plan.ce_sectors * SECTOR) as usize];
    for d in &plan.dirs {
        for r in &d.records {
            for (i, &(lba, off)) in r.areas.iter().enumerate() {
                let b = area_bytes(r, i);
                let at = (lba.0 - plan.ce_start.0) as usize * SECTOR as usize + off as usize;
                out[at..at + b.len()].copy_from_slice(&b);
            }
        }
    }
    out
}

fn catalog_bytes(plan: &Plan, opts: &IsoOptions) -> Vec<u8> {
    let bios = plan
        .bios_file
        .zip(opts.bios.as_ref())
        .map(|(i, b)| BootEntry {
            platform: PLATFORM_X86,
            lba: plan.files[i].lba,
            sectors: b.load_sectors,
        });
    let efi = plan.efi_file.map(|i| BootEntry {
        platform: PLATFORM_EFI,
        lba: plan.files[i].lba,
        sectors: eltorito::efi_sectors(plan.files[i].content.len()),
    });
    match (bios, efi) {
        (Some(b), e) => eltorito::catalog(&b, e.as_ref()),
        (None, Some(e)) => eltorito::catalog(&e, None),
        (None, None) => vec![0; SECTOR as usize],
    }
}

/// File `i`'s data padded to whole sectors: the catalog's real bytes, the
/// BIOS image with its boot info table, or the content streamed.
fn write_file<W: Write>(
    plan: &Plan,
    opts: &IsoOptions,
    i: usize,
    w: &mut Out<W>,
) -> Result<(), IsoError> {
    let f = &plan.files[i];
    let path = &f.paths[0];
    let len = f.content.len();
    if plan.catalog_file == Some(i) {
        w.put(&catalog_bytes(plan, opts))?;
    } else if let Some(b) = opts
        .bios
        .as_ref()
        .filter(|b| b.boot_info_table && plan.bios_file == Some(i))
    {
        let mut image = read_boot_image(&f.content, path, &b.image)?;
        if opts.hybrid.is_some() && image.get(64..68) != Some(&ISOLINUX_HYBRID_MAGIC[..]) {
            return Err(IsoError::Boot {
                path: b.image.clone(),
                reason:
                    "isohybrid needs an isolinux.bin with the hybrid signature (syslinux >= 3.72)"
                        .into(),
            });
        }
        eltorito::patch_boot_info(&mut image, Lba(SYSTEM_AREA_SECTORS), f.lba);
        w.put(&image)?;
    } else {
        let n = copy_content(&f.content, path, &mut w.w)?;
        w.pos += n;
    }
    w.zeros(records::sectors(len) * u64::from(SECTOR) - len)
}

fn read_boot_image(
    content: &crate::tree::Content,
    path: &Path,
    image: &Path,
) -> Result<Vec<u8>, IsoError> {
    let len = content.len();
    if !(eltorito::BOOT_INFO_END as u64..=MAX_BOOT_IMAGE).contains(&len) {
        return Err(IsoError::Boot {
            path: image.into(),
            reason: format!(
                "a boot image with a boot info table must be 64 bytes to 16 MiB, not {len}"
            ),
        });
    }
    let read_err = |source| WriteError::Read {
        path: path.into(),
        origin: content.origin(),
        source,
    };
    let mut buf = Vec::with_capacity(len as usize);
    content
        .open()
        .and_then(|r| r.take(len).read_to_end(&mut buf))
        .map_err(read_err)?;
    if buf.len() as u64 != len {
        return Err(IsoError::Write(WriteError::ShortContent {
            path: path.into(),
            origin: content.origin(),
            expected: len,
            got: buf.len() as u64,
        }));
    }
    Ok(buf)
}
