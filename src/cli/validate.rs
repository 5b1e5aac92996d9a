//! `smelt validate`: check spec files without building.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Spec files, merged in order
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
}

pub fn run(g: &GlobalArgs, a: ValidateArgs) -> anyhow::Result<ExitCode> {
    match smelt::spec::load(&a.specs) {
        Ok(_) => {
            if g.json {
                outln!("{}", serde_json::json!({ "valid": true, "errors": [] }));
            } else if !g.quiet {
                eprintln!("smelt: {} valid", names(&a.specs));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if g.json {
                let errors: Vec<String> = e.to_string().lines().map(String::from).collect();
                outln!(
                    "{}",
                    serde_json::json!({ "valid": false, "errors": errors })
                );
            } else {
                eprintln!("{e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn names(specs: &[PathBuf]) -> String {
    specs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
