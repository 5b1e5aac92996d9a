//! `smelt build` as a library call: spec files → pinned images → root tree →
//! artifacts + manifest, all committed atomically at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::artifacts::Format;
use crate::artifacts::manifest::{self, Manifest};
use crate::artifacts::output::{OutputSet, Written};
use crate::assemble;
use crate::lock::LockFile;
use crate::oci::{PullPolicy, Resolver, Store};

/// The boot firmware image the ISO and UKI take isolinux and systemd-stub
/// from.
pub const BOOT_FIRMWARE: &str = "smelt/boot:latest";

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub specs: Vec<PathBuf>,
    pub formats: Vec<Format>,
    pub out_dir: PathBuf,
    pub name: Option<String>,
    pub store: PathBuf,
    pub pull: PullPolicy,
    /// `(registry, base URL)` pairs, see [`crate::oci::parse_mirrors`].
    pub mirrors: Vec<(String, String)>,
    pub locked: bool,
    /// `--size` of the raw/qcow2 disk; `None`: computed from the content.
    pub disk_size: Option<u64>,
    pub progress: bool,
}

/// `--size`: a size as the spec writes one ([`crate::spec::ByteSize`]):
/// bytes, or a number with a K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    crate::spec::ByteSize::parse(s).map(|b| b.0)
}

/// What a build wrote, also printed by `--json`.
#[derive(Debug, serde::Serialize)]
pub struct BuildSummary {
    pub name: String,
    pub outputs: Vec<Written>,
    pub manifest: Manifest,
}

/// The timestamp every artifact carries: `SOURCE_DATE_EPOCH`, else 0.
pub fn source_date_epoch() -> anyhow::Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a non-negative integer")),
        _ => Ok(0),
    }
}

pub fn build(opts: &BuildOptions) -> anyhow::Result<BuildSummary> {
    let first = opts.specs.first().context("no spec file given")?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => default_name(first)?,
    };
    let epoch = source_date_epoch()?;
    crate::artifacts::Format::check_together(&opts.formats)?;
    let spec = crate::spec::load(&opts.specs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::open(&opts.store)
        .with_context(|| format!("opening image store {}", opts.store.display()))?;
    let client = crate::oci::registry_client(&opts.mirrors)?;
    let reporter = crate::progress::Reporter::new(opts.progress);
    let mut resolver = Resolver::new(&store, &client, opts.pull);
    resolver.progress = &reporter;
    let lock_path = first.with_file_name(format!("{name}.lock"));
    let lock = LockFile::read(&lock_path)?;

    let mut root = assemble::assemble(&spec, &resolver, epoch)?;
    let mut formats = opts.formats.clone();
    formats.sort();
    formats.dedup();
    // Before any artifact: say which outputs this kernel cannot boot.
    if let (Some(parts), Some(k)) = (
        &root.kernel,
        spec.kernel.as_ref().and_then(|k| k.image.as_ref()),
    ) {
        let source = crate::kernel::config_in_tree(&parts.image, &k.reference)?;
        for line in crate::kernel::warn_for_build(
            source.as_ref(),
            &formats,
            spec.initrd_options().compression,
            spec.root_options().compression,
        ) {
            tracing::warn!("{line}");
        }
    }
    let boot_media = formats.iter().any(|f| f.needs_boot_media());
    let firmware = if boot_media {
        assemble::boot_firmware(&mut root, &resolver, BOOT_FIRMWARE)?
    } else {
        crate::tree::FsTree::new()
    };
    let pins: BTreeMap<String, String> = root
        .images
        .iter()
        .map(|i| (i.reference.to_string(), i.digest.to_string()))
        .collect();
    if opts.locked {
        lock.check(&lock_path, &pins)?;
    }

    let mut outputs = OutputSet::new(&opts.out_dir)
        .with_context(|| format!("creating output directory {}", opts.out_dir.display()))?;
    let mut media =
        crate::artifacts::boot::BootMedia::new(&name, &root, firmware, epoch, spec.root_options());
    crate::artifacts::write_formats(
        &mut outputs,
        &root,
        &mut media,
        &formats,
        &crate::artifacts::FormatOptions {
            initrd: spec.initrd_options(),
            raw: crate::artifacts::raw::RawOptions {
                size: opts.disk_size,
                partitions: Vec::new(),
                slot: Some(spec.slot_size()),
            },
            iso_slot: Some(spec.slot_size()),
            epoch,
        },
        &reporter,
    )?;
    let manifest = manifest::build(&name, epoch, &formats, &root, &outputs)?;
    manifest::write(&mut outputs, &name, &manifest)?;
    let written = outputs
        .commit()
        .with_context(|| format!("committing artifacts in {}", opts.out_dir.display()))?;
    if !opts.locked {
        LockFile::from_pins(pins).write(&lock_path)?;
    }
    Ok(BuildSummary {
        name,
        outputs: written,
        manifest,
    })
}

fn default_name(spec: &Path) -> anyhow::Result<String> {
    spec.file_stem()
        .and_then(|s| s.to_str())
        .map(String::from)
        .with_context(|| {
            format!(
                "cannot derive an artifact name from {}; use --name",
                spec.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("2X").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err(), "overflow");
    }
}
