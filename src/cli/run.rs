//! `smelt run`: boot an artifact under QEMU for local testing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use smelt::run::qemu::{Accel, BootConfig, Outcome};

use super::GlobalArgs;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// NAME.iso, NAME.raw or NAME.qcow2; or the NAME-kernel file of a
    /// kernel+initrd build, or its output directory (with --name)
    pub artifact: PathBuf,
    /// Artifact base name, when ARTIFACT is a directory
    #[arg(long)]
    pub name: Option<String>,
    /// Power the guest off after this many seconds (exit code 124)
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub mem: u32,
    /// Boot with UEFI firmware (OVMF) instead of SeaBIOS
    #[arg(long)]
    pub uefi: bool,
    /// Extra drive (raw, or qcow2 by extension); repeatable
    #[arg(long = "disk", value_name = "FILE")]
    pub disks: Vec<PathBuf>,
    /// Forward 127.0.0.1:HOST to the guest's GUEST TCP port; repeatable
    #[arg(long = "port", value_name = "HOST:GUEST", value_parser = parse_forward)]
    pub forwards: Vec<(u16, u16)>,
    /// Accelerator: auto (KVM only with SMELT_KVM=1), kvm, tcg
    #[arg(long, default_value = "auto")]
    pub accel: AccelArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

fn parse_forward(s: &str) -> Result<(u16, u16), String> {
    let (h, g) = s.split_once(':').ok_or("expected HOST:GUEST")?;
    let port = |p: &str| p.parse::<u16>().map_err(|e| format!("port {p:?}: {e}"));
    Ok((port(h)?, port(g)?))
}

pub fn run(_g: &GlobalArgs, a: RunArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = BootConfig::default();
    // The initrd and the config initrd, joined as a boot loader would; kept
    // until QEMU has read it.
    let joined = tempfile::NamedTempFile::new().context("creating a temporary initrd")?;
    match smelt::run::media_drive(&a.artifact) {
        Some(drive) => cfg.extra_args = drive,
        None => {
            let k = smelt::run::find_kernel_initrd(&a.artifact, a.name.as_deref())?;
            cfg.kernel = Some(k.kernel);
            cfg.initrd = Some(match &k.config {
                Some(c) => {
                    smelt::run::concat_initrds(&[&k.initrd, c], joined.path())?;
                    joined.path().to_path_buf()
                }
                None => k.initrd,
            });
            cfg.cmdline = Some(k.cmdline);
        }
    }
    let cfg = BootConfig {
        mem_mib: a.mem,
        // No timeout means "until the guest powers off": 100 years will do.
        timeout: Duration::from_secs(a.timeout.unwrap_or(100 * 365 * 86_400)),
        accel: match a.accel {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        },
        interactive: true,
        uefi: a.uefi,
        disks: a.disks,
        forwards: a.forwards,
        ..cfg
    };
    let result = cfg.boot().context("booting under QEMU")?;
    match result.outcome {
        Outcome::Exited(0) => Ok(ExitCode::SUCCESS),
        Outcome::TimedOut => {
            eprintln!("smelt: run: timed out, guest killed");
            Ok(ExitCode::from(124))
        }
        Outcome::Exited(code) => {
            eprintln!(
                "smelt: run: qemu exited with {code}: {}",
                result.stderr_tail.trim()
            );
            Ok(ExitCode::from(1))
        }
    }
}
