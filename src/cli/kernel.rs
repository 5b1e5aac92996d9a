//! `smelt kernel check`: the kernel options the outputs need.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use smelt::artifacts::Format;
use smelt::kernel::{self, KernelSource, Report, Target};
use smelt::oci::{PullPolicy, Reference};

use super::GlobalArgs;

#[derive(Subcommand, Debug)]
pub enum KernelCommand {
    /// Check a kernel's options for outputs (exit 0 all present, 1 some missing)
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Kernel image, resolved through the store and registry as `smelt build` does
    #[arg(
        value_name = "IMAGE",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub image: Option<Reference>,
    /// Outputs, comma-separated: kernel+initrd (default), tar, kernel+squashfs, uki, iso, raw, qcow2
    #[arg(long = "for", value_delimiter = ',', value_name = "OUTPUT,...")]
    pub outputs: Vec<String>,
    /// A kernel .config file to check instead of an image's
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The spec's `root: compression`: zstd, xz, gzip
    #[arg(long, default_value = "zstd", value_name = "COMPRESSION")]
    pub root_compression: String,
    /// The spec's `initrd: compression`: gzip, zstd, none
    #[arg(long, default_value = "gzip", value_name = "COMPRESSION")]
    pub initrd_compression: String,
    /// When to pull the image: missing (store first), always, never
    #[arg(long, default_value = "missing", value_name = "POLICY")]
    pub pull: PullPolicy,
    /// Redirect a registry: REGISTRY=URL (repeatable)
    #[arg(long = "mirror", value_name = "REGISTRY=URL")]
    pub mirrors: Vec<String>,
}

pub fn run(g: &GlobalArgs, c: KernelCommand) -> anyhow::Result<ExitCode> {
    let KernelCommand::Check(a) = c;
    let mut outputs: Vec<Format> = Vec::new();
    for o in &a.outputs {
        let o = o.parse()?;
        if !outputs.contains(&o) {
            outputs.push(o);
        }
    }
    if outputs.is_empty() {
        outputs.push(Format::KernelInitrd);
    }
    let target = Target {
        outputs,
        initrd: kernel::parse_initrd_compression(&a.initrd_compression)?,
        root: kernel::parse_root_compression(&a.root_compression)?,
    };
    let source = match (&a.config, &a.image) {
        (Some(path), _) => KernelSource::from_file(path)?,
        (None, Some(image)) => {
            let mirrors = smelt::oci::parse_mirrors(&a.mirrors)?;
            let store = super::store_root(g);
            kernel::load_from_image(&store, image, a.pull, &mirrors, !g.quiet)?
        }
        (None, None) => anyhow::bail!("give a kernel IMAGE or --config FILE"),
    };
    let report = Report::new(&source, &target)?;
    if g.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in report.lines() {
            outln!("{line}");
        }
    }
    Ok(if report.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
