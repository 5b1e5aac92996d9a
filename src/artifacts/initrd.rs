//! `kernel+initrd`: `NAME-kernel`, `NAME-initrd.img` (newc cpio of the whole
//! root, compressed as the spec says, CPU microcode cpio first and
//! uncompressed when the kernel image has one) and `NAME-cmdline`
//! (no trailing newline, as LinuxKit writes it).

use std::io::{self, Write};

use anyhow::{Context, bail};

use crate::artifacts::output::OutputSet;
use crate::assemble::Assembled;
use crate::compress;
use crate::formats::cpio;
use crate::progress::{Progress, ProgressWriter};
use crate::spec::{Compression, InitrdOptions};
use crate::tree::Content;

pub fn write_kernel_initrd(
    outputs: &mut OutputSet,
    name: &str,
    root: &Assembled,
    opts: &InitrdOptions,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let Some(k) = &root.kernel else {
        bail!("format kernel+initrd needs a kernel: the spec has no `kernel.image`");
    };
    let mut kernel = outputs.create(&format!("{name}-kernel"))?;
    copy_content(&k.kernel, &mut kernel).context("writing the kernel")?;
    outputs.finish(kernel)?;

    let mut initrd = outputs.create(&format!("{name}-initrd.img"))?;
    if let Some(ucode) = &k.ucode {
        copy_content(ucode, &mut initrd).context("writing the microcode cpio")?;
    }
    progress.start(initrd.name(), Some(root.tree.total_size()));
    let written = write_initrd(&root.tree, opts, &mut initrd, progress);
    progress.finish();
    written.context("writing the initrd")?;
    outputs.finish(initrd)?;

    let mut cmdline = outputs.create(&format!("{name}-cmdline"))?;
    cmdline.write_all(k.cmdline.as_bytes())?;
    outputs.finish(cmdline)?;
    Ok(())
}

/// The compression the spec's `initrd:` asks for.
pub fn compression(opts: &InitrdOptions) -> compress::Compression {
    let level = opts.effective_level();
    match opts.compression {
        Compression::None => compress::Compression::None,
        Compression::Gzip => compress::Compression::Gzip {
            level: level.clamp(1, 9) as u32,
        },
        Compression::Zstd => compress::Compression::Zstd { level },
    }
}

/// The root tree as a compressed newc cpio; `progress` counts the
/// uncompressed bytes.
pub fn write_initrd(
    tree: &crate::tree::FsTree,
    opts: &InitrdOptions,
    out: impl Write,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let mut w = compress::writer(compression(opts), out)?;
    let mut counted = ProgressWriter {
        inner: &mut w,
        progress,
    };
    cpio::write_newc(tree, &mut counted, &cpio::CpioOptions::default())?;
    w.finish()?;
    Ok(())
}

/// Stream `content` into `out`, checking its length.
pub fn copy_content(content: &Content, out: &mut impl Write) -> anyhow::Result<()> {
    let n = io::copy(&mut content.open()?, out)?;
    if n != content.len() {
        bail!(
            "{}: expected {} bytes, read {n}",
            content.origin(),
            content.len()
        );
    }
    Ok(())
}
