//! `raw` (`NAME.raw`) and `qcow2` (`NAME.qcow2`): a GPT disk that boots
//! under BIOS and UEFI, written sequentially.
//!
//! Layout (512-byte sectors; every GUID derives from the root's sha256):
//!
//! | where | what |
//! |---|---|
//! | LBA 0 | protective MBR; its boot code is isolinux's isohybrid MBR (`isohdpfx.bin`) pointing at `isolinux.bin` |
//! | LBA 1–33 | GPT header and entries |
//! | byte 32 KiB – | a small ISO 9660 volume `SMELT_BIOS` (isolinux, the kernel, stage 1): partition 1 `smelt-bios`, type BIOS boot |
//! | 1 MiB aligned | partition 2 `ESP`: the build's one ESP image (FAT, the UKI as `\EFI\BOOT\BOOTX64.EFI`, the same bytes as the ISO's `boot/efi.img`), then zeros to the partition's end |
//! | 1 MiB aligned | partition 3 `smelt-root-a`: the root squashfs (Linux root x86-64 type), PARTUUID pinned in stage 1 |
//! | 1 MiB aligned | partition 4 `smelt-root-b`: empty, same size, for updates |
//! | last 16 MiB + backup GPT | left free for the config slot partition |
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
use crate::assemble;
use crate::formats::gpt::{self, BootCode, GptDisk, Guid, Lba, MbrOptions, Partition};
use crate::formats::{iso9660, qcow2};
use crate::progress::Progress;
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

/// The planned disk: partitions and the bytes that go in them.
struct Plan {
    disk: GptDisk,
    /// isolinux's isohybrid MBR code (`isohdpfx.bin`).
    mbr_code: Vec<u8>,
    /// Where it finds `isolinux.bin`, in 512-byte sectors.
    isolinux_lba512: u32,
    bios_iso: Vec<u8>,
    esp: Vec<u8>,
}

impl BootMedia<'_> {
    /// `NAME.raw`, and `NAME.qcow2` from it when `qcow2` is set.
    pub fn write_raw(
        &mut self,
        outputs: &mut OutputSet,
        raw: bool,
        qcow2_too: bool,
        size: Option<u64>,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        let plan = self.plan_raw(outputs, size, progress)?;
        let dir = outputs.dir().to_path_buf();
        let root = self.squashfs(&dir, progress)?.content();
        let name = self.name.clone();
        let mut f = outputs.create(&format!("{name}.raw"))?;
        progress.start(f.name(), Some(plan.disk.size_bytes));
        let written = write_disk(&plan, &root, &mut f);
        progress.finish();
        written.context("writing the raw disk")?;
        f.flush()?;
        if qcow2_too {
            let mut q = outputs.create(&format!("{name}.qcow2"))?;
            let mut reader = f.reader()?;
            qcow2::write_qcow2(&mut reader, plan.disk.size_bytes, &mut q)
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
        size: Option<u64>,
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

        let esp_size = round_mib((uki_len * 2 + 16 * MIB).max(MIN_ESP));
        let bios_end = round_mib(bios_iso.len() as u64 + MIB);
        let slot = round_mib((sq_size * 2).max(sq_size + 64 * MIB));
        let esp_start = bios_end;
        let a_start = esp_start + esp_size;
        let b_start = a_start + slot;
        let needed = b_start + slot + CONFIG_ROOM + 33 * SECTOR;
        let total = match size {
            None => round_mib(needed),
            Some(s) if s >= needed && s % SECTOR == 0 => s,
            Some(s) => bail!(
                "--size {s}: the disk needs at least {} bytes (a multiple of 512)",
                round_mib(needed)
            ),
        };
        let part = |ty: Guid, label: &str, start: u64, len: u64, guid: Guid| Partition {
            type_guid: ty,
            guid,
            first_lba: Lba(start / SECTOR),
            last_lba: Lba((start + len) / SECTOR - 1),
            attributes: 0,
            name: label.to_string(),
        };
        let g = |what: &str| Guid::derive(seed_hex.as_bytes(), what);
        let root_a: Guid = image
            .partuuid
            .parse()
            .map_err(|e| anyhow::anyhow!("partuuid {}: {e:?}", image.partuuid))?;
        let disk = GptDisk {
            disk_guid: g("disk"),
            size_bytes: total,
            partitions: vec![
                part(
                    Guid::BIOS_BOOT,
                    "smelt-bios",
                    ISO_SYSTEM_AREA,
                    bios_end - ISO_SYSTEM_AREA,
                    g("bios"),
                ),
                part(Guid::EFI_SYSTEM, "ESP", esp_start, esp_size, g("esp")),
                part(
                    Guid::LINUX_ROOT_X86_64,
                    super::stage1::PARTLABEL_A,
                    a_start,
                    slot,
                    root_a,
                ),
                part(
                    Guid::LINUX_ROOT_X86_64,
                    "smelt-root-b",
                    b_start,
                    slot,
                    g("root-b"),
                ),
            ],
        };
        disk.validate().context("raw disk layout")?;
        // The build's one ESP image (the ISO's `boot/efi.img` too); the
        // partition is larger, see MIN_ESP.
        let esp = self.esp(&dir, progress)?.to_vec();
        if esp.len() as u64 > esp_size {
            bail!(
                "the ESP image ({} bytes) does not fit its {esp_size}-byte partition",
                esp.len()
            );
        }
        Ok(Plan {
            disk,
            mbr_code,
            isolinux_lba512,
            bios_iso,
            esp,
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
    let p = &plan.disk.partitions;
    // The BIOS volume's first 32 KiB are its (empty) system area: the MBR
    // and GPT take that place.
    zeros(out, &mut pos, ISO_SYSTEM_AREA)?;
    out.write_all(&plan.bios_iso[ISO_SYSTEM_AREA as usize..])?;
    pos += plan.bios_iso.len() as u64 - ISO_SYSTEM_AREA;
    zeros(out, &mut pos, p[1].first_lba.byte_offset())?;
    out.write_all(&plan.esp)?;
    pos += plan.esp.len() as u64;
    zeros(out, &mut pos, p[2].first_lba.byte_offset())?;
    let n = std::io::copy(&mut root.open()?, out)?;
    if n != root.len() {
        bail!("root squashfs: expected {} bytes, read {n}", root.len());
    }
    pos += n;
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
