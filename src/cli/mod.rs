//! Subcommand definitions; each file is a thin adapter onto the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// `println!` for data on stdout that survives a reader that went away
/// (`smelt image ls | head`): see [`out`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out(format_args!($($arg)*))
    };
}

mod build;
mod image;
mod inject;
mod kernel;
mod run;
mod validate;

#[derive(Parser, Debug)]
#[command(
    name = "smelt",
    version,
    about = "Turn container images into immutable, bootable operating systems"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Local image store (an OCI image layout) [default: $XDG_CACHE_HOME/smelt]
    #[arg(long, global = true, env = "SMELT_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// More log output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print a machine-readable JSON summary on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build artifacts from one or more spec files
    Build(build::BuildArgs),
    /// Check spec files without building (exit 0 valid, 1 invalid)
    Validate(validate::ValidateArgs),
    /// Manage images in the local store
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Boot an artifact under QEMU (serial console on this terminal)
    Run(run::RunArgs),
    /// Check a kernel for the options smelt's outputs need
    #[command(subcommand)]
    Kernel(kernel::KernelCommand),
    /// Put a cloud-init seed (user-data, meta-data, ...) into a built artifact
    Inject(inject::InjectArgs),
}

pub fn init_logging(g: &GlobalArgs) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SMELT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("smelt={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Build(a) => build::run(g, a),
        Command::Validate(a) => validate::run(g, a),
        Command::Image(c) => image::run(g, c),
        Command::Run(a) => run::run(g, a),
        Command::Kernel(c) => kernel::run(g, c),
        Command::Inject(a) => inject::run(g, a),
    }
}

/// The store named by `--store`/`SMELT_STORE`, or the default.
pub fn store_root(g: &GlobalArgs) -> PathBuf {
    g.store
        .clone()
        .unwrap_or_else(smelt::oci::Store::default_root)
}

/// Write one line of data to stdout. `println!` panics when the reader has
/// closed the pipe (Rust ignores SIGPIPE, so the write fails with EPIPE);
/// like a command killed by SIGPIPE, smelt then stops quietly, with exit
/// code 0 as `head` expects. Other write errors end with exit code 1.
pub fn out(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let r = o
        .write_fmt(line)
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush());
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("smelt: error: writing to stdout: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
