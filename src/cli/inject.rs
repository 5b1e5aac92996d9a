//! `smelt inject`: replace, show or clear the cloud-init seed of an artifact.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use smelt::slots::inject::{self, Mode};
use smelt::slots::{Config, Sources};

use super::GlobalArgs;

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// A raw disk, ISO, qcow2 or config initrd (NAME-config.img) smelt built
    #[arg(value_name = "ARTIFACT")]
    pub artifact: PathBuf,
    /// The user-data (a `#cloud-config` YAML document) [default: empty]
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<PathBuf>,
    /// The meta-data (YAML: instance-id, local-hostname) [default: empty]
    #[arg(long, value_name = "FILE")]
    pub meta_data: Option<PathBuf>,
    /// A network-config (v1 or v2 YAML)
    #[arg(long, value_name = "FILE")]
    pub network_config: Option<PathBuf>,
    /// An extra file at PATH in the seed (relative, directories allowed), read from SRC
    #[arg(long = "file", value_name = "PATH=SRC", value_parser = file_arg)]
    pub files: Vec<(PathBuf, PathBuf)>,
    /// Print the seed the artifact holds and change nothing
    #[arg(long, conflicts_with_all = ["clear", "output", "user_data", "meta_data", "network_config", "files"])]
    pub show: bool,
    /// Restore the pristine (empty) seed, byte-identical to the build
    #[arg(long, conflicts_with_all = ["user_data", "meta_data", "network_config", "files"])]
    pub clear: bool,
    /// Write the result here instead of in place; `-` for stdout
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

pub fn run(g: &GlobalArgs, a: InjectArgs) -> anyhow::Result<ExitCode> {
    if a.show {
        let shown = inject::show(&a.artifact)?;
        match g.json {
            true => outln!("{}", serde_json::to_string_pretty(&shown.to_json())?),
            false => shown.lines().iter().for_each(|l| outln!("{l}")),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let sources = Sources {
        user_data: a.user_data,
        meta_data: a.meta_data,
        network_config: a.network_config,
        files: a.files,
    };
    let config = match (a.clear, sources.is_empty()) {
        (true, _) => Config::pristine(),
        (false, true) => bail!(
            "nothing to inject: give --user-data, --meta-data, --network-config or --file (or --clear, --show)"
        ),
        (false, false) => sources.load()?,
    };
    let mut stdout = std::io::stdout().lock();
    let mode = match a.output.as_deref() {
        None => Mode::InPlace,
        Some(p) if p.as_os_str() == "-" => {
            if stdout.is_terminal() {
                bail!(
                    "refusing to write a binary image to a terminal; redirect stdout or use -o FILE"
                );
            }
            Mode::Stream(&mut stdout)
        }
        Some(p) => Mode::Copy(p),
    };
    let done = inject::inject(&a.artifact, &config, mode)?;
    if !g.quiet {
        let what = if a.clear { "cleared" } else { "injected" };
        eprintln!(
            "smelt: {what} {} ({}, {} bytes of seed)",
            a.artifact.display(),
            done.kind,
            done.bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn file_arg(s: &str) -> Result<(PathBuf, PathBuf), String> {
    match s.split_once('=') {
        Some((p, src)) if !p.is_empty() && !src.is_empty() => Ok((p.into(), src.into())),
        _ => Err(format!("{s:?} is not PATH=SRC")),
    }
}
