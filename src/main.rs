//! The `smelt` command line: parse arguments, run a command, map errors to
//! exit codes. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args.global);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // One report, at the top: the whole context chain on one line.
            eprintln!("smelt: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
