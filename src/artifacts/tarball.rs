//! `tar`: `NAME.tar`, the root tree as an uncompressed tarball, with the
//! kernel at `boot/kernel` and the command line at `boot/cmdline` when the
//! spec has a kernel (the layout of LinuxKit's intermediate tarball).

use std::path::Path;

use crate::artifacts::output::OutputSet;
use crate::assemble::Assembled;
use crate::formats::tar;
use crate::progress::{Progress, ProgressWriter};
use crate::tree::{Content, Meta, Node};

pub fn write_tar(
    outputs: &mut OutputSet,
    name: &str,
    root: &Assembled,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let mut tree = root.tree.clone();
    if let Some(k) = &root.kernel {
        let mtime = tree.root().meta.mtime;
        let meta = Meta {
            mtime,
            ..Meta::root(0o644)
        };
        tree.insert(
            Path::new("boot/kernel"),
            Node::file(meta.clone(), k.kernel.clone()),
        )?;
        let cmdline = Content::Bytes(k.cmdline.as_bytes().into());
        tree.insert(Path::new("boot/cmdline"), Node::file(meta, cmdline))?;
        tree.set_mtime_all(mtime);
    }
    let mut out = outputs.create(&format!("{name}.tar"))?;
    progress.start(out.name(), Some(tree.total_size()));
    let mut counted = ProgressWriter {
        inner: &mut out,
        progress,
    };
    let written = tar::write_tar(&tree, &mut counted, &tar::TarOptions::default());
    progress.finish();
    written?;
    outputs.finish(out)?;
    Ok(())
}
