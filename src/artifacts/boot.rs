//! The squashfs-root boot media: `kernel+squashfs`, `uki` and `iso`, and
//! the intermediates they share.
//!
//! Each intermediate is built at most once per build, the first time an
//! output needs it ([`BootMedia`]): the root squashfs (an anonymous file in
//! the output directory, so a killed build leaves nothing), the stage-1
//! initramfs that verifies it (see [`super::stage1`]), the unified kernel
//! image (systemd-stub + kernel + stage 1 + cmdline + os-release) and the
//! EFI system partition image holding it as `\EFI\BOOT\BOOTX64.EFI`, which
//! the ISO and the raw disk share.
//!
//! The ISO: isolinux (BIOS, El Torito no-emulation with a boot info table)
//! boots `/boot/kernel` with `/boot/initrd.img` (stage 1); UEFI boots the
//! UKI from `/boot/efi.img` (El Torito EFI entry, and the GPT's ESP when the
//! image is written to a USB stick); the root is `/smelt/root.squashfs`.
//! The volume id is `SMELT_` and the first 8 hex digits of the root's
//! sha256, which is what stage 1 looks for.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::output::OutputSet;
use super::slot::MediaSlot;
use super::stage1::{self, RootImage};
use crate::assemble::{self, Assembled};
use crate::digest::{Digest, HashingWriter};
use crate::formats::gpt::Guid;
use crate::formats::{fat, gpt, iso9660, pe, squashfs};
use crate::progress::Progress;
use crate::slots::index::INDEX_OFFSET;
use crate::spec::{RootCompression, RootOptions};
use crate::tree::{Content, FsTree, Meta, Node};

/// The root squashfs of this build, in an anonymous file.
pub struct RootSquashfs {
    file: File,
    pub size: u64,
    pub sha256: Digest,
}

impl RootSquashfs {
    /// The image as tree content (read through `/proc/self/fd`, so it needs
    /// no name on disk).
    pub fn content(&self) -> Content {
        Content::Host {
            path: Arc::new(PathBuf::from(format!(
                "/proc/self/fd/{}",
                self.file.as_raw_fd()
            ))),
            len: self.size,
        }
    }

    pub fn image(&self) -> RootImage {
        let hex = self.sha256.hex();
        RootImage {
            sha256: self.sha256.clone(),
            size: self.size,
            volume_id: format!("SMELT_{}", hex[..8].to_ascii_uppercase()),
            partuuid: gpt::Guid::derive(hex.as_bytes(), stage1::PARTLABEL_A).to_string(),
        }
    }
}

/// The shared intermediates of one build, made on first use.
pub struct BootMedia<'a> {
    pub name: String,
    root: &'a Assembled,
    firmware: FsTree,
    epoch: i64,
    options: RootOptions,
    squashfs: Option<RootSquashfs>,
    stage1: Option<Vec<u8>>,
    uki: Option<Vec<u8>>,
    esp: Option<Vec<u8>>,
}

impl<'a> BootMedia<'a> {
    pub fn new(
        name: &str,
        root: &'a Assembled,
        firmware: FsTree,
        epoch: i64,
        options: RootOptions,
    ) -> Self {
        BootMedia {
            name: name.to_string(),
            root,
            firmware,
            epoch,
            options,
            squashfs: None,
            stage1: None,
            uki: None,
            esp: None,
        }
    }

    /// The boot firmware image's tree (isolinux, systemd-stub).
    pub fn firmware(&self) -> &FsTree {
        &self.firmware
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    pub fn kernel(&self) -> anyhow::Result<&assemble::KernelParts> {
        self.root
            .kernel
            .as_ref()
            .context("the boot media need a kernel: the spec has no `kernel.image`")
    }

    /// The root as squashfs, written once into `dir`.
    pub fn squashfs(
        &mut self,
        dir: &Path,
        progress: &dyn Progress,
    ) -> anyhow::Result<&RootSquashfs> {
        if self.squashfs.is_none() {
            self.squashfs = Some(write_root_squashfs(
                &self.root.tree,
                &self.options,
                self.epoch,
                dir,
                progress,
            )?);
        }
        Ok(self.squashfs.as_ref().expect("set above"))
    }

    /// The stage-1 initramfs (needs the squashfs's digest).
    pub fn stage1(&mut self, dir: &Path, progress: &dyn Progress) -> anyhow::Result<&[u8]> {
        if self.stage1.is_none() {
            let image = self.squashfs(dir, progress)?.image();
            self.stage1 = Some(
                stage1::initramfs(&self.root.tree, &image, self.epoch)
                    .context("writing the stage-1 initramfs")?,
            );
        }
        Ok(self.stage1.as_deref().expect("set above"))
    }

    /// The unified kernel image.
    pub fn uki(&mut self, dir: &Path, progress: &dyn Progress) -> anyhow::Result<&[u8]> {
        if self.uki.is_none() {
            let initrd = self.stage1(dir, progress)?.to_vec();
            let k = self.kernel()?;
            let linux = k.kernel.read_all().context("reading the kernel")?;
            let stub = assemble::read_file(&self.firmware, "efi/linuxx64.efi.stub")
                .context("boot firmware image: systemd-stub")?;
            let release = stage1::kernel_release(&self.root.tree)?;
            let osrel = format!(
                "NAME=smelt\nID=smelt\nPRETTY_NAME=\"{} (smelt)\"\nIMAGE_ID={}\n",
                self.name, self.name
            );
            let uki = pe::build_uki(&pe::UkiParts {
                stub: &stub,
                osrel: osrel.as_bytes(),
                cmdline: k.cmdline.as_bytes(),
                uname: release.as_deref().map(str::as_bytes),
                linux: &linux,
                initrd: &initrd,
            })
            .context("assembling the unified kernel image")?;
            self.uki = Some(uki);
        }
        Ok(self.uki.as_deref().expect("set above"))
    }

    /// The build's one EFI system partition image: a FAT holding the UKI
    /// as the removable-media default boot entry `\EFI\BOOT\BOOTX64.EFI`
    /// (UEFI spec 3.5.1.1). The ISO stores it as `boot/efi.img` (El Torito
    /// and the hybrid GPT's ESP), the raw disk writes it at the start of its
    /// ESP partition. Sized to its contents, FAT type by size (fatgen103);
    /// `BPB_HiddSec` is 0 although on the raw disk the volume starts further
    /// in: UEFI's FAT driver and Linux's vfat ignore it (only boot code in
    /// the volume's own boot sector would use it, and an ESP has none).
    pub fn esp(&mut self, dir: &Path, progress: &dyn Progress) -> anyhow::Result<&[u8]> {
        if self.esp.is_none() {
            let t = esp_tree(self.uki(dir, progress)?.to_vec())?;
            let seed = self.squashfs(dir, progress)?.sha256.clone();
            let opts = fat::FatOptions {
                label: "SMELT_EFI".into(),
                volume_id: u32::from_str_radix(&seed.hex()[8..16], 16).unwrap_or(0),
                mtime: self.epoch,
                kind: None,
                size: None,
                hidden_sectors: 0,
            };
            let mut out = Vec::new();
            fat::write_fat(&t, &opts, &mut out)
                .context("writing the EFI system partition image")?;
            self.esp = Some(out);
        }
        Ok(self.esp.as_deref().expect("set above"))
    }

    /// `NAME-kernel`, `NAME-initrd.img` (stage 1), `NAME-cmdline`,
    /// `NAME-squashfs.img`.
    pub fn write_kernel_squashfs(
        &mut self,
        outputs: &mut OutputSet,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        let dir = outputs.dir().to_path_buf();
        let k = self.kernel()?.clone();
        let mut kernel = outputs.create(&format!("{}-kernel", self.name))?;
        super::initrd::copy_content(&k.kernel, &mut kernel).context("writing the kernel")?;
        outputs.finish(kernel)?;
        let stage1 = self.stage1(&dir, progress)?.to_vec();
        let mut initrd = outputs.create(&format!("{}-initrd.img", self.name))?;
        initrd.write_all(&stage1)?;
        outputs.finish(initrd)?;
        let mut cmdline = outputs.create(&format!("{}-cmdline", self.name))?;
        cmdline.write_all(k.cmdline.as_bytes())?;
        outputs.finish(cmdline)?;
        let content = self.squashfs(&dir, progress)?.content();
        let mut sq = outputs.create(&format!("{}-squashfs.img", self.name))?;
        super::initrd::copy_content(&content, &mut sq).context("copying the root squashfs")?;
        outputs.finish(sq)?;
        Ok(())
    }

    /// `NAME.efi`.
    pub fn write_uki(
        &mut self,
        outputs: &mut OutputSet,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        let dir = outputs.dir().to_path_buf();
        let uki = self.uki(&dir, progress)?.to_vec();
        let mut f = outputs.create(&format!("{}.efi", self.name))?;
        f.write_all(&uki)?;
        outputs.finish(f)?;
        Ok(())
    }

    /// `NAME.iso`: see the module doc.
    /// `NAME.iso`; with `slot` (bytes) a config slot stored as the file
    /// [`ISO_SLOT_FILE`], covered by a hybrid GPT partition `CIDATA` and
    /// found through the slot index in the System Area (docs/slots.md).
    pub fn write_iso(
        &mut self,
        outputs: &mut OutputSet,
        slot: Option<u64>,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        let dir = outputs.dir().to_path_buf();
        let esp = self.esp(&dir, progress)?.to_vec();
        let stage1 = self.stage1(&dir, progress)?.to_vec();
        let sq = self.squashfs(&dir, progress)?;
        let (root_content, image, seed) = (sq.content(), sq.image(), sq.sha256.clone());
        let k = self.kernel()?.clone();
        let fw = |p: &str| -> anyhow::Result<Content> {
            let b = assemble::read_file(&self.firmware, p)
                .with_context(|| format!("boot firmware image: /{p}"))?;
            Ok(Content::Bytes(Arc::from(b)))
        };
        let mut t = bios_tree(
            &fw("bios/isolinux.bin")?,
            &fw("bios/ldlinux.c32")?,
            &k,
            stage1,
        )?;
        let file = |c: Content| Node::file(Meta::root(0o444), c);
        t.mkdir_p(Path::new("smelt"), Meta::root(0o755))?;
        t.insert(
            Path::new("boot/efi.img"),
            file(Content::Bytes(Arc::from(esp))),
        )?;
        t.insert(
            Path::new(stage1::ISO_ROOT_PATH.trim_start_matches('/')),
            file(root_content),
        )?;
        let mut uuid_seed = [0u8; 32];
        uuid_seed.copy_from_slice(&hex_bytes(seed.hex()));
        let slot = slot.map(|size| MediaSlot::new(size, &uuid_seed, self.epoch));
        let mut partitions = Vec::new();
        if let Some(s) = &slot {
            t.insert(
                Path::new(ISO_SLOT_FILE),
                file(Content::Bytes(Arc::from(s.pristine()?))),
            )?;
            partitions.push(iso9660::HybridPartition {
                type_guid: Guid::MICROSOFT_BASIC_DATA,
                name: crate::slots::nocloud::PARTITION_NAME.into(),
                span: iso9660::PartitionSpan::File(ISO_SLOT_FILE.into()),
            });
        }
        t.set_mtime_all(self.epoch);
        let mbr = assemble::read_file(&self.firmware, "bios/isohdpfx.bin")
            .context("boot firmware image: isohdpfx.bin")?;
        let mut opts = iso9660::IsoOptions {
            volume_id: image.volume_id.clone(),
            mtime: self.epoch,
            bios: Some(bios_boot()),
            efi: Some(iso9660::EfiBoot {
                image: "boot/efi.img".into(),
            }),
            hybrid: Some(iso9660::Hybrid {
                mbr,
                gpt: true,
                partitions,
                system_area: Vec::new(),
            }),
            uuid_seed,
        };
        let mut record = None;
        if let Some(s) = &slot {
            // The slot file's place, for the index the System Area holds.
            let at = iso9660::layout(&t, &opts)
                .context("laying out the ISO")?
                .files
                .get(Path::new(ISO_SLOT_FILE))
                .context("the ISO has no config slot file")?
                .lba
                .offset();
            if let Some(h) = opts.hybrid.as_mut() {
                h.system_area.push((INDEX_OFFSET, s.index(at)?.to_vec()));
            }
            record = Some(s.record(at));
        }
        let mut f = outputs.create(&format!("{}.iso", self.name))?;
        f.slot = record;
        progress.start(f.name(), None);
        let written = iso9660::write_iso(&t, &opts, &mut f);
        progress.finish();
        written.context("writing the ISO")?;
        outputs.finish(f)?;
        Ok(())
    }
}

/// The config slot's file in the ISO (docs/slots.md).
pub const ISO_SLOT_FILE: &str = "CIDATA.IMG";

/// An ESP's files: the UKI as the removable-media default boot entry
/// `\EFI\BOOT\BOOTX64.EFI` (UEFI spec 3.5.1.1).
pub fn esp_tree(uki: Vec<u8>) -> anyhow::Result<FsTree> {
    let mut t = FsTree::new();
    t.mkdir_p(Path::new("EFI/BOOT"), Meta::root(0o755))?;
    t.insert(
        Path::new("EFI/BOOT/BOOTX64.EFI"),
        Node::file(Meta::root(0o644), Content::Bytes(Arc::from(uki))),
    )?;
    Ok(t)
}

/// The El Torito entry for isolinux.
pub fn bios_boot() -> iso9660::BiosBoot {
    iso9660::BiosBoot {
        image: "isolinux/isolinux.bin".into(),
        catalog: "isolinux/boot.cat".into(),
        load_sectors: 4,
        boot_info_table: true,
    }
}

/// isolinux, its config, the kernel and stage 1: the BIOS half of the ISO,
/// and the whole of the raw disk's BIOS boot volume.
pub fn bios_tree(
    isolinux: &Content,
    ldlinux: &Content,
    k: &assemble::KernelParts,
    stage1: Vec<u8>,
) -> anyhow::Result<FsTree> {
    let mut t = FsTree::new();
    for d in ["isolinux", "boot"] {
        t.mkdir_p(Path::new(d), Meta::root(0o755))?;
    }
    let file = |c: Content| Node::file(Meta::root(0o444), c);
    t.insert(Path::new("isolinux/isolinux.bin"), file(isolinux.clone()))?;
    t.insert(Path::new("isolinux/ldlinux.c32"), file(ldlinux.clone()))?;
    t.insert(
        Path::new("isolinux/isolinux.cfg"),
        file(Content::Bytes(Arc::from(
            isolinux_cfg(&k.cmdline).into_bytes(),
        ))),
    )?;
    t.insert(Path::new("boot/kernel"), file(k.kernel.clone()))?;
    t.insert(
        Path::new("boot/initrd.img"),
        file(Content::Bytes(Arc::from(stage1))),
    )?;
    Ok(t)
}

/// isolinux's configuration: no menu, straight to the kernel; the serial
/// line mirrors the console so headless machines show the boot.
pub fn isolinux_cfg(cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\nDEFAULT smelt\nPROMPT 0\nTIMEOUT 0\nLABEL smelt\n  KERNEL /boot/kernel\n  INITRD /boot/initrd.img\n  APPEND {cmdline}\n"
    )
}

pub fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// The squashfs options the spec's `root:` asks for.
pub fn squashfs_options(opts: &RootOptions, epoch: i64) -> squashfs::SquashfsOptions {
    let level = opts.effective_level();
    squashfs::SquashfsOptions {
        compression: match opts.compression {
            RootCompression::Zstd => squashfs::SquashfsCompression::Zstd { level },
            RootCompression::Xz => squashfs::SquashfsCompression::Xz {
                level: level.max(0) as u32,
            },
            RootCompression::Gzip => squashfs::SquashfsCompression::Gzip {
                level: level.max(1) as u32,
            },
        },
        block_size: opts.effective_block_size(),
        mkfs_time: epoch,
        ..Default::default()
    }
}

fn write_root_squashfs(
    tree: &FsTree,
    opts: &RootOptions,
    epoch: i64,
    dir: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<RootSquashfs> {
    let mut file = tempfile::tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    progress.start("root squashfs", Some(tree.total_size()));
    let info = squashfs::write_squashfs(tree, &squashfs_options(opts, epoch), &mut file);
    progress.finish();
    let info = info.context("writing the root squashfs")?;
    file.seek(SeekFrom::Start(0))?;
    let mut h = HashingWriter::new(std::io::sink());
    std::io::copy(&mut std::io::Read::take(&file, info.image_size), &mut h)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(RootSquashfs {
        file,
        size: info.image_size,
        sha256: h.digest(),
    })
}
