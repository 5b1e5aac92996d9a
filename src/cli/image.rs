//! `smelt image pack|push|ls`: base images without Docker.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use smelt::oci::Reference;

use super::GlobalArgs;

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Make a one-layer OCI image from a directory (deterministic)
    Pack {
        /// Directory that becomes the image's root
        dir: PathBuf,
        /// Reference to tag the image with in the store (repeatable)
        #[arg(long = "tag", required = true, value_name = "REF")]
        tags: Vec<Reference>,
        /// OCI image config (JSON: the `config` object or a whole image config)
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Ownership, mode and device-node manifest (see docs/images.md)
        #[arg(long, value_name = "FILE")]
        owners: Option<PathBuf>,
    },
    /// Copy an image from the store to a registry
    Push {
        /// Image in the local store
        local: Reference,
        /// Destination reference (registry/repository:tag)
        dest: Reference,
        /// Redirect a registry: REGISTRY=URL (repeatable)
        #[arg(long = "mirror", value_name = "REGISTRY=URL")]
        mirrors: Vec<String>,
    },
    /// List the images in the store
    Ls,
}

pub fn run(g: &GlobalArgs, c: ImageCommand) -> anyhow::Result<ExitCode> {
    let store = smelt::oci::Store::open(&super::store_root(g))?;
    match c {
        ImageCommand::Pack {
            dir,
            tags,
            config,
            owners,
        } => {
            let digest =
                smelt::image::pack(&store, &dir, &tags, config.as_deref(), owners.as_deref())?;
            report(g, &tags[0].to_string(), &digest.to_string());
        }
        ImageCommand::Push {
            local,
            dest,
            mirrors,
        } => {
            let mirrors = smelt::oci::parse_mirrors(&mirrors)?;
            let digest = smelt::image::push(&store, &local, &dest, &mirrors, !g.quiet)?;
            report(g, &dest.to_string(), &digest.to_string());
        }
        ImageCommand::Ls => {
            let entries = smelt::image::list(&store)?;
            if g.json {
                outln!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                for e in entries {
                    outln!("{}\t{}\t{}", e.reference, e.digest, e.size);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(g: &GlobalArgs, reference: &str, digest: &str) {
    if g.json {
        outln!(
            "{}",
            serde_json::json!({ "reference": reference, "digest": digest })
        );
    } else {
        outln!("{reference}@{digest}");
    }
}
