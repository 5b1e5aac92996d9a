//! `smelt build`: spec files → artifacts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use smelt::artifacts::Format;
use smelt::build::BuildOptions;
use smelt::oci::PullPolicy;

use super::GlobalArgs;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Output format (repeatable): kernel+initrd, tar, kernel+squashfs, uki, iso, raw, qcow2
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    pub formats: Vec<String>,
    /// Output directory
    #[arg(short = 'o', long = "dir", default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Base name of the artifacts [default: the first spec's file stem]
    #[arg(long)]
    pub name: Option<String>,
    /// When to pull images: missing (store first), always, never
    #[arg(long, default_value = "missing", value_name = "POLICY")]
    pub pull: PullPolicy,
    /// Redirect a registry: REGISTRY=URL, e.g. docker.io=http://127.0.0.1:5000 (repeatable)
    #[arg(long = "mirror", value_name = "REGISTRY=URL")]
    pub mirrors: Vec<String>,
    /// Fail if an image reference resolves to a digest other than the lock file's
    #[arg(long)]
    pub locked: bool,
    /// Size of the raw/qcow2 disk: bytes, or with a K, M, G or T suffix
    /// (powers of 1024) [default: computed from the content]
    #[arg(long, value_name = "SIZE", value_parser = smelt::build::parse_size)]
    pub size: Option<u64>,
    /// Spec files, merged in order
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
}

pub fn run(g: &GlobalArgs, a: BuildArgs) -> anyhow::Result<ExitCode> {
    let formats = if a.formats.is_empty() {
        vec![Format::KernelInitrd]
    } else {
        a.formats
            .iter()
            .map(|f| f.parse())
            .collect::<Result<Vec<Format>, _>>()?
    };
    let opts = BuildOptions {
        specs: a.specs,
        formats,
        out_dir: a.dir,
        name: a.name,
        store: super::store_root(g),
        pull: a.pull,
        mirrors: smelt::oci::parse_mirrors(&a.mirrors)?,
        locked: a.locked,
        disk_size: a.size,
        progress: !g.quiet,
    };
    let summary = smelt::build::build(&opts)?;
    if g.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for o in &summary.outputs {
            tracing::info!("wrote {} ({} bytes)", o.path.display(), o.size);
        }
    }
    Ok(ExitCode::SUCCESS)
}
