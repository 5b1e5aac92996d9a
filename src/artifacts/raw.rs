//! `raw` (`NAME.raw`) and `qcow2` (`NAME.qcow2`): a GPT disk that boots
//! under BIOS and UEFI, written sequentially.
//!
//! Layout (512-byte sectors; every GUID derives from the root's sha256):
//!
//! | where | what |
//! |---|---|
//! | LBA 0 | protective MBR; its boot code is isolinux's isohybrid MBR (`isohdpfx.bin`) pointing at `isolinux.bin` |
//! | LBA 1–33 | GPT header and entries |
//! | byte 24576 (LBA 48) | the config slot index (docs/slots.md) |
//! | byte 32 KiB – | a small ISO 9660 volume `SMELT_BIOS` (isolinux, the kernel, stage 1): partition 1 `smelt-bios`, type BIOS boot |
//! | 1 MiB aligned | partition 2 `ESP`: the build's one ESP image (FAT, the UKI as `\EFI\BOOT\BOOTX64.EFI`, the same bytes as the ISO's `boot/efi.img`), then zeros to the partition's end |
//! | 1 MiB aligned | partition 3 `smelt-root-a`: the root squashfs (Linux root x86-64 type), PARTUUID pinned in stage 1 |
//! | 1 MiB aligned | partition 4 `smelt-root-b`: empty, same size, for updates |
//! | 1 MiB aligned | partition 5 `CIDATA`: the config slot, a FAT file system (`slots.size`, default 4 MiB), pristine until `smelt inject` |
//! | to the end | free (at least what the 16 MiB room leaves), then the backup GPT |
//!
//! BIOS: the MBR code loads isolinux.bin by LBA, isolinux reads the ISO 9660
//! volume from the disk (as on a hybrid ISO written to a stick: the volume
//! descriptors start at byte 32 KiB, after the GPT) and boots the kernel
//! with stage 1. UEFI: the firmware starts the UKI from the ESP. Either way
//! stage 1 finds partition 3 by PARTUUID and checks its sha256.
//!
//! Root slot size: twice the squashfs, at least 64 MiB more than it, in
//! whole MiB, so an update larger than today's root still fits. `--size`
//! grows the disk (the extra space stays free at the end); a size too small
//! for the layout is an error.

use std::io::Write;

use anyhow::{Context, bail};

use super::boot::{BootMedia, bios_boot, bios_tree, hex_bytes};
use super::output::OutputSet;
use super::slot::MediaSlot;
use crate::assemble;
use crate::formats::gpt::{self, BootCode, GptDisk, Guid, Lba, MbrOptions, Partition};
use crate::formats::{iso9660, qcow2};
use crate::progress::Progress;
use crate::slots::index::INDEX_OFFSET;
use crate::tree::Content;

const MIB: u64 = 1 << 20;
const SECTOR: u64 = gpt::SECTOR_SIZE;
/// Where the BIOS volume's ISO 9660 descriptors start (ECMA-119 6.2.1:
/// the system area is the first 16 2048-byte sectors).
const ISO_SYSTEM_AREA: u64 = 32 * 1024;
/// Room kept free for the config slot partition.
pub const CONFIG_ROOM: u64 = 16 * MIB;
/// Smallest ESP partition. The partition is sized for updates (twice the
/// UKI plus 16 MiB, at least 64 MiB: room for a second kernel) while the FAT
/// in it is the build's one ESP image, sized to its contents
/// ([`BootMedia::esp`]); the rest of the partition is zeros, for an update
/// to grow the FAT into.
const MIN_ESP: u64 = 64 * MIB;

fn round_mib(n: u64) -> u64 {
    n.div_ceil(MIB) * MIB
}

/// A partition a caller adds to the raw disk (the config slot, say). The
/// extras follow the root slots in order, each 1 MiB aligned, in the room
/// kept free at the end ([`CONFIG_ROOM`]; the disk grows when they need
/// more). Its unique GUID derives from the root's sha256 and `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPartition {
    /// `PartitionTypeGUID`, e.g. [`Guid::MICROSOFT_BASIC_DATA`].
    pub type_guid: Guid,
    /// GPT `PartitionName`, unique on the disk.
    pub name: String,
    /// The partition's bytes; the partition is this long rounded up to
    /// whole MiB, the rest zeros.
    pub content: Vec<u8>,
}

/// What `raw` and `qcow2` take beyond the boot media.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawOptions {
    /// `--size`: bytes of the disk; `None`: computed from the content.
    pub size: Option<u64>,
    /// Partitions after the root slots.
    pub partitions: Vec<RawPartition>,
    /// Bytes of the config slot (docs/slots.md): a `CIDATA` partition
    /// after the others and the slot index at byte 24576; `None`: no slot.
    pub slot: Option<u64>,
}

/// The planned disk: partitions and the bytes that go in them.
struct Plan {
    disk: GptDisk,
    /// isolinux's isohybrid MBR code (`isohdpfx.bin`).
    mbr_code: Vec<u8>,
    /// Where it finds `isolinux.bin`, in 512-byte sectors.
    isolinux_lba512: u32,
    /// What goes where after the primary GPT, by byte offset, ascending.
    pieces: Vec<(u64, Piece)>,
    /// The config slot and its byte offset.
    slot: Option<(MediaSlot, u64)>,
}

enum Piece {
    Bytes(Vec<u8>),
    /// The root squashfs, streamed from its file.
    Root,
}

/// The sizes the layout depends on, in bytes.
struct Sizes {
    bios_volume: u64,
    uki: u64,
    squashfs: u64,
    /// Each extra partition's content.
    extras: Vec<u64>,
}

/// Byte offsets and lengths of the partitions, in GPT entry order: BIOS
/// volume, ESP, root A, root B, then the extras; and the disk size.
fn disk_layout(sz: &Sizes, size: Option<u64>) -> anyhow::Result<(Vec<(u64, u64)>, u64)> {
    let esp_size = round_mib((sz.uki * 2 + 16 * MIB).max(MIN_ESP));
    let bios_end = round_mib(sz.bios_volume + MIB);
    let slot = round_mib((sz.squashfs * 2).max(sz.squashfs + 64 * MIB));
    let esp_start = bios_end;
    let a_start = esp_start + esp_size;
    let b_start = a_start + slot;
    let mut parts = vec![
        (ISO_SYSTEM_AREA, bios_end - ISO_SYSTEM_AREA),
        (esp_start, esp_size),
        (a_start, slot),
        (b_start, slot),
    ];
    let room_start = b_start + slot;
    let mut end = room_start;
    for &len in &sz.extras {
        if len == 0 {
            bail!("an extra raw disk partition is empty");
        }
        parts.push((end, round_mib(len)));
        end += round_mib(len);
    }
    let needed = end.max(room_start + CONFIG_ROOM) + 33 * SECTOR;
    let total = match size {
        None => round_mib(needed),
        Some(s) if s >= needed && s % SECTOR == 0 => s,
        Some(s) => bail!(
            "--size {s}: the disk needs at least {} bytes (a multiple of 512)",
            round_mib(needed)
        ),
    };
    Ok((parts, total))
}

impl BootMedia<'_> {
    /// `NAME.raw`, and `NAME.qcow2` from it when `qcow2` is set.
    pub fn write_raw(
        &mut self,
        outputs: &mut OutputSet,
        raw: bool,
        qcow2_too: bool,
        opts: &RawOptions,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        let plan = self.plan_raw(outputs, opts, progress)?;
        let dir = outputs.dir().to_path_buf();
        let root = self.squashfs(&dir, progress)?.content();
        let name = self.name.clone();
        let mut f = outputs.create(&format!("{name}.raw"))?;
        f.slot = plan.slot.map(|(s, at)| s.record(at));
        progress.start(f.name(), Some(plan.disk.size_bytes));
        let written = write_disk(&plan, &root, &mut f);
        progress.finish();
        written.context("writing the raw disk")?;
        f.flush()?;
        if qcow2_too {
            let mut q = outputs.create(&format!("{name}.qcow2"))?;
            q.slot = f.slot.clone();
            let mut reader = f.reader()?;
            let qopts = qcow2::Qcow2Options {
                keep_allocated: plan
                    .slot
                    .map(|(s, at)| s.keep_allocated(at))
                    .unwrap_or_default(),
            };
            qcow2::write_qcow2_with(&mut reader, plan.disk.size_bytes, &qopts, &mut q)
                .context("writing the qcow2 image")?;
            outputs.finish(q)?;
        }
        if raw {
            outputs.finish(f)?;
        }
        Ok(())
    }

    fn plan_raw(
        &mut self,
        outputs: &OutputSet,
        opts: &RawOptions,
        progress: &dyn Progress,
    ) -> anyhow::Result<Plan> {
        let dir = outputs.dir().to_path_buf();
        let uki_len = self.uki(&dir, progress)?.len() as u64;
        let stage1 = self.stage1(&dir, progress)?.to_vec();
        let sq = self.squashfs(&dir, progress)?;
        let (sq_size, image, seed_hex) = (sq.size, sq.image(), sq.sha256.hex().to_string());
        let k = self.kernel()?.clone();
        let fw = self.firmware();
        let read = |p: &str| -> anyhow::Result<Vec<u8>> {
            assemble::read_file(fw, p).with_context(|| format!("boot firmware image: /{p}"))
        };
        let isolinux = Content::Bytes(read("bios/isolinux.bin")?.into());
        let ldlinux = Content::Bytes(read("bios/ldlinux.c32")?.into());
        let bios_tree = bios_tree(&isolinux, &ldlinux, &k, stage1)?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&hex_bytes(&seed_hex));
        let iso_opts = iso9660::IsoOptions {
            // Not the root's volume id: stage 1 must not take this volume
            // for the ISO that carries the root.
            volume_id: "SMELT_BIOS".into(),
            mtime: self.epoch(),
            bios: Some(bios_boot()),
            efi: None,
            hybrid: None,
            uuid_seed: seed,
        };
        let mut bios_iso = Vec::new();
        let layout = iso9660::write_iso(&bios_tree, &iso_opts, &mut bios_iso)
            .context("writing the BIOS boot volume")?;
        let isolinux_lba = layout
            .files
            .get(std::path::Path::new("isolinux/isolinux.bin"))
            .context("BIOS boot volume has no isolinux.bin")?
            .lba;
        let mbr_code = read("bios/isohdpfx.bin")?;
        let isolinux_lba512 = isolinux_lba.sector512() as u32;
        let slot = opts
            .slot
            .map(|size| MediaSlot::new(size, &seed, self.epoch()));
        let mut extras = opts.partitions.clone();
        if let Some(s) = &slot {
            extras.push(RawPartition {
                type_guid: Guid::MICROSOFT_BASIC_DATA,
                name: crate::slots::nocloud::PARTITION_NAME.into(),
                content: s.pristine()?,
            });
        }

        let sizes = Sizes {
            bios_volume: bios_iso.len() as u64,
            uki: uki_len,
            squashfs: sq_size,
            extras: extras.iter().map(|p| p.content.len() as u64).collect(),
        };
        let (spans, total) = disk_layout(&sizes, opts.size)?;
        let g = |what: &str| Guid::derive(seed_hex.as_bytes(), what);
        let root_a: Guid = image
            .partuuid
            .parse()
            .map_err(|e| anyhow::anyhow!("partuuid {}: {e:?}", image.partuuid))?;
        let mut named = vec![
            (Guid::BIOS_BOOT, "smelt-bios".to_string(), g("bios")),
            (Guid::EFI_SYSTEM, "ESP".to_string(), g("esp")),
            (
                Guid::LINUX_ROOT_X86_64,
                super::stage1::PARTLABEL_A.to_string(),
                root_a,
            ),
            (
                Guid::LINUX_ROOT_X86_64,
                "smelt-root-b".to_string(),
                g("root-b"),
            ),
        ];
        for p in &extras {
            let guid = g(&format!("partition {}", p.name));
            named.push((p.type_guid, p.name.clone(), guid));
        }
        let disk = GptDisk {
            disk_guid: g("disk"),
            size_bytes: total,
            partitions: named
                .into_iter()
                .zip(&spans)
                .map(|((type_guid, name, guid), &(start, len))| Partition {
                    type_guid,
                    guid,
                    first_lba: Lba(start / SECTOR),
                    last_lba: Lba((start + len) / SECTOR - 1),
                    attributes: 0,
                    name,
                })
                .collect(),
        };
        disk.validate().context("raw disk layout")?;
        // The build's one ESP image (the ISO's `boot/efi.img` too); the
        // partition is larger, see MIN_ESP.
        let esp = self.esp(&dir, progress)?.to_vec();
        if esp.len() as u64 > spans[1].1 {
            bail!(
                "the ESP image ({} bytes) does not fit its {}-byte partition",
                esp.len(),
                spans[1].1
            );
        }
        // The BIOS volume's first 32 KiB are its (empty) system area: the
        // MBR and GPT take that place.
        let volume = bios_iso.split_off(ISO_SYSTEM_AREA as usize);
        let slot = slot.zip(spans.last().map(|&(start, _)| start));
        let mut pieces = Vec::new();
        if let Some((s, at)) = &slot {
            pieces.push((INDEX_OFFSET, Piece::Bytes(s.index(*at)?.to_vec())));
        }
        pieces.extend([
            (spans[0].0, Piece::Bytes(volume)),
            (spans[1].0, Piece::Bytes(esp)),
            (spans[2].0, Piece::Root),
        ]);
        for (p, &(start, _)) in extras.into_iter().zip(&spans[4..]) {
            pieces.push((start, Piece::Bytes(p.content)));
        }
        Ok(Plan {
            disk,
            mbr_code,
            isolinux_lba512,
            pieces,
            slot,
        })
    }
}

/// Stream the whole disk in order; gaps are zeros.
fn write_disk(plan: &Plan, root: &Content, out: &mut impl Write) -> anyhow::Result<()> {
    let mut pos = 0u64;
    let primary = plan.disk.primary_with(&MbrOptions {
        boot_code: BootCode::Isohybrid {
            code: &plan.mbr_code,
            boot_lba: plan.isolinux_lba512,
        },
        ..MbrOptions::default()
    })?;
    out.write_all(&primary)?;
    pos += primary.len() as u64;
    for (at, piece) in &plan.pieces {
        zeros(out, &mut pos, *at)?;
        match piece {
            Piece::Bytes(b) => {
                out.write_all(b)?;
                pos += b.len() as u64;
            }
            Piece::Root => {
                let n = std::io::copy(&mut root.open()?, out)?;
                if n != root.len() {
                    bail!("root squashfs: expected {} bytes, read {n}", root.len());
                }
                pos += n;
            }
        }
    }
    zeros(out, &mut pos, plan.disk.backup_offset())?;
    out.write_all(&plan.disk.backup()?)?;
    Ok(())
}

/// Write zeros from `*pos` up to `to`.
fn zeros(out: &mut impl Write, pos: &mut u64, to: u64) -> anyhow::Result<()> {
    if to < *pos {
        bail!(
            "raw disk layout overlaps at byte {to} (already at {})",
            *pos
        );
    }
    let buf = vec![0u8; MIB as usize];
    while *pos < to {
        let n = (to - *pos).min(MIB) as usize;
        out.write_all(&buf[..n])?;
        *pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(extras: Vec<u64>) -> Sizes {
        Sizes {
            bios_volume: 3 * MIB / 2,
            uki: 11 * MIB,
            squashfs: 40 * MIB,
            extras,
        }
    }

    #[test]
    fn layout_without_extras() {
        let (parts, total) = disk_layout(&sizes(Vec::new()), None).unwrap();
        assert_eq!(
            parts,
            [
                (32 * 1024, 3 * MIB - 32 * 1024),
                (3 * MIB, 64 * MIB),
                (67 * MIB, 104 * MIB),
                (171 * MIB, 104 * MIB),
            ]
        );
        assert_eq!(total, 275 * MIB + CONFIG_ROOM + MIB, "room + backup GPT");
    }

    #[test]
    fn extras_follow_the_root_slots_in_the_room_at_the_end() {
        let (_, plain) = disk_layout(&sizes(Vec::new()), None).unwrap();
        let (parts, total) = disk_layout(&sizes(vec![4 * MIB, 1]), None).unwrap();
        assert_eq!(parts[4..], [(275 * MIB, 4 * MIB), (279 * MIB, MIB)]);
        assert_eq!(total, plain, "5 MiB of extras fit the 16 MiB room");
        let (parts, total) = disk_layout(&sizes(vec![20 * MIB]), None).unwrap();
        assert_eq!(parts[4], (275 * MIB, 20 * MIB));
        assert_eq!(total, 275 * MIB + 20 * MIB + MIB, "the disk grows");
        let e = disk_layout(&sizes(vec![0]), None).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = disk_layout(&sizes(vec![20 * MIB]), Some(plain)).unwrap_err();
        assert!(e.to_string().contains("needs at least"), "{e}");
    }
}
