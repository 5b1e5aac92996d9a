//! Artifacts composed from formats: kernel+initrd, tar, the boot media
//! (kernel+squashfs, UKI, ISO, raw, qcow2); the manifest; and the atomic
//! output set every artifact is written through. [`Format`] names them and
//! [`write_formats`] writes a build's list.

pub mod boot;
pub mod format;
pub mod initrd;
pub mod manifest;
pub mod output;
pub mod raw;
pub mod slot;
pub mod stage1;
pub mod tarball;

pub use format::Format;

use crate::assemble::Assembled;
use crate::progress::Progress;
use crate::spec::InitrdOptions;
use boot::BootMedia;
use output::OutputSet;

/// What the formats take beyond the root and the boot media.
#[derive(Clone, Debug)]
pub struct FormatOptions {
    /// The spec's `initrd:` (kernel+initrd).
    pub initrd: InitrdOptions,
    /// The raw/qcow2 disk's size, extra partitions and config slot.
    pub raw: raw::RawOptions,
    /// Bytes of the ISO's config slot (the spec's `slots.size`).
    pub iso_slot: Option<u64>,
    /// The build's epoch, for the config initrd.
    pub epoch: i64,
}

/// Writes each of `formats` (sorted, each once) into `outputs`; the boot
/// media build their shared intermediates on first use.
pub fn write_formats(
    outputs: &mut OutputSet,
    root: &Assembled,
    media: &mut BootMedia<'_>,
    formats: &[Format],
    opts: &FormatOptions,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let name = media.name.clone();
    for f in formats {
        match f {
            Format::KernelInitrd => {
                initrd::write_kernel_initrd(outputs, &name, root, &opts.initrd, progress)?;
                slot::write_config_initrd(outputs, &name, opts.epoch)?;
            }
            Format::Tar => tarball::write_tar(outputs, &name, root, progress)?,
            Format::KernelSquashfs => {
                media.write_kernel_squashfs(outputs, progress)?;
                slot::write_config_initrd(outputs, &name, opts.epoch)?;
            }
            Format::Uki => media.write_uki(outputs, progress)?,
            Format::Iso => media.write_iso(outputs, opts.iso_slot, progress)?,
            // One pass writes both: qcow2 is converted from the raw bytes.
            Format::Raw => media.write_raw(
                outputs,
                true,
                formats.contains(&Format::Qcow2),
                &opts.raw,
                progress,
            )?,
            Format::Qcow2 if formats.contains(&Format::Raw) => {}
            Format::Qcow2 => media.write_raw(outputs, false, true, &opts.raw, progress)?,
        }
    }
    Ok(())
}
