//! `NAME.manifest.json`: every output with its size and sha256, every input
//! image with its digest. Deterministic: no build time, no host names,
//! outputs in the order written.

use std::io::Write;

use crate::artifacts::Format;
use crate::artifacts::output::{OutputSet, SlotRecord};
use crate::assemble::Assembled;
use crate::digest::Digest;

pub const SCHEMA: &str = "smelt.manifest/v1";

#[derive(Clone, Debug, serde::Serialize)]
pub struct Manifest {
    pub schema: &'static str,
    pub name: String,
    pub smelt_version: &'static str,
    pub source_date_epoch: i64,
    pub formats: Vec<Format>,
    pub outputs: Vec<OutputEntry>,
    pub images: Vec<ImageEntry>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct OutputEntry {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// The config slot: what `smelt inject` rewrites, and the only bytes
    /// that may differ from `sha256` after it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<SlotRecord>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageEntry {
    /// Where the image went: `kernel`, `init`, `onboot/000-NAME`, …
    pub role: String,
    pub reference: String,
    pub digest: Digest,
}

pub fn build(
    name: &str,
    epoch: i64,
    formats: &[Format],
    root: &Assembled,
    outputs: &OutputSet,
) -> anyhow::Result<Manifest> {
    Ok(Manifest {
        schema: SCHEMA,
        name: name.to_string(),
        smelt_version: env!("CARGO_PKG_VERSION"),
        source_date_epoch: epoch,
        formats: formats.to_vec(),
        outputs: outputs
            .pending()
            .map(|o| OutputEntry {
                name: o.name().to_string(),
                size: o.len(),
                sha256: o.digest(),
                slot: o.slot.clone(),
            })
            .collect(),
        images: root
            .images
            .iter()
            .map(|i| ImageEntry {
                role: i.role.clone(),
                reference: i.reference.to_string(),
                digest: i.digest.clone(),
            })
            .collect(),
    })
}

/// Add the manifest itself to the build's outputs.
pub fn write(outputs: &mut OutputSet, name: &str, manifest: &Manifest) -> anyhow::Result<()> {
    let mut f = outputs.create(&format!("{name}.manifest.json"))?;
    serde_json::to_writer_pretty(&mut f, manifest)?;
    f.write_all(b"\n")?;
    outputs.finish(f)?;
    Ok(())
}
