//! `smelt build` as a library call: spec files → pinned images → root tree →
//! artifacts + manifest, all committed atomically at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};

use crate::artifacts::manifest::{self, Manifest};
use crate::artifacts::output::{OutputSet, Written};
use crate::assemble;
use crate::lock::LockFile;
use crate::oci::{PullPolicy, RegistryClient, RegistryOptions, Resolver, Store};

/// An artifact format `smelt build -f` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Format {
    /// `NAME-kernel`, `NAME-initrd.img`, `NAME-cmdline`.
    #[serde(rename = "kernel+initrd")]
    KernelInitrd,
    /// `NAME.tar`: the root tree, kernel at `boot/kernel`.
    #[serde(rename = "tar")]
    Tar,
    /// `NAME-kernel`, `NAME-initrd.img` (stage 1), `NAME-cmdline`,
    /// `NAME-squashfs.img`.
    #[serde(rename = "kernel+squashfs")]
    KernelSquashfs,
    /// `NAME.efi`: the unified kernel image.
    #[serde(rename = "uki")]
    Uki,
    /// `NAME.iso`: hybrid ISO, BIOS and UEFI, CD and USB stick.
    #[serde(rename = "iso")]
    Iso,
    /// `NAME.raw`: GPT disk, BIOS and UEFI.
    #[serde(rename = "raw")]
    Raw,
    /// `NAME.qcow2`: the raw disk as sparse qcow2.
    #[serde(rename = "qcow2")]
    Qcow2,
}

/// The boot firmware image the ISO and UKI take isolinux and systemd-stub
/// from.
pub const BOOT_FIRMWARE: &str = "smelt/boot:latest";

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Format> {
        // LinuxKit's BIOS/EFI-only names map to the hybrid outputs, so
        // LinuxKit build scripts keep working.
        match s {
            "kernel+initrd" => Ok(Format::KernelInitrd),
            "tar" => Ok(Format::Tar),
            "kernel+squashfs" => Ok(Format::KernelSquashfs),
            "uki" => Ok(Format::Uki),
            "iso" | "iso-bios" | "iso-efi" | "iso-efi-initrd" => Ok(Format::Iso),
            "raw" | "raw-bios" | "raw-efi" => Ok(Format::Raw),
            "qcow2" | "qcow2-bios" | "qcow2-efi" => Ok(Format::Qcow2),
            other => bail!(
                "unknown output format {other:?} (supported: kernel+initrd, tar, kernel+squashfs, uki, iso, raw, qcow2; LinuxKit's iso-bios, iso-efi, raw-bios, raw-efi, qcow2-bios, qcow2-efi)"
            ),
        }
    }
}

impl Format {
    /// Whether the format boots from a squashfs root (and needs the boot
    /// firmware image).
    pub fn needs_boot_media(self) -> bool {
        !matches!(self, Format::KernelInitrd | Format::Tar)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::KernelInitrd => "kernel+initrd",
            Format::Tar => "tar",
            Format::KernelSquashfs => "kernel+squashfs",
            Format::Uki => "uki",
            Format::Iso => "iso",
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub specs: Vec<PathBuf>,
    pub formats: Vec<Format>,
    pub out_dir: PathBuf,
    pub name: Option<String>,
    pub store: PathBuf,
    pub pull: PullPolicy,
    /// `(registry, base URL)` pairs, see [`parse_mirrors`].
    pub mirrors: Vec<(String, String)>,
    pub locked: bool,
    /// `--size` of the raw/qcow2 disk; `None`: computed from the content.
    pub disk_size: Option<u64>,
    pub progress: bool,
}

/// `--size`: bytes, or a number with a K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "size {s:?}: unknown suffix {c:?} (use K, M, G or T)"
                    ));
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("size {s:?} is not a number of bytes (e.g. 2G, 512M, 1048576)"))
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
    let spec = crate::spec::load(&opts.specs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::open(&opts.store)
        .with_context(|| format!("opening image store {}", opts.store.display()))?;
    let client = registry_client(&opts.mirrors)?;
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
    for f in &formats {
        match f {
            Format::KernelInitrd => crate::artifacts::initrd::write_kernel_initrd(
                &mut outputs,
                &name,
                &root,
                &spec.initrd_options(),
                &reporter,
            )?,
            Format::Tar => {
                crate::artifacts::tarball::write_tar(&mut outputs, &name, &root, &reporter)?
            }
            Format::KernelSquashfs => media.write_kernel_squashfs(&mut outputs, &reporter)?,
            Format::Uki => media.write_uki(&mut outputs, &reporter)?,
            Format::Iso => media.write_iso(&mut outputs, &reporter)?,
            // One pass writes both: qcow2 is converted from the raw bytes.
            Format::Raw => media.write_raw(
                &mut outputs,
                true,
                formats.contains(&Format::Qcow2),
                opts.disk_size,
                &reporter,
            )?,
            Format::Qcow2 if formats.contains(&Format::Raw) => {}
            Format::Qcow2 => {
                media.write_raw(&mut outputs, false, true, opts.disk_size, &reporter)?
            }
        }
    }
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

/// Parse `--mirror REGISTRY=URL` arguments.
pub fn parse_mirrors(specs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    specs
        .iter()
        .map(|m| {
            RegistryOptions::parse_mirror(m).with_context(|| {
                format!("invalid --mirror {m:?}: expected REGISTRY=http(s)://HOST[:PORT]")
            })
        })
        .collect()
}

/// A registry client with Docker's credentials and the given mirrors.
pub fn registry_client(mirrors: &[(String, String)]) -> anyhow::Result<RegistryClient> {
    let mut opts = RegistryOptions::from_env().context("reading Docker credentials")?;
    opts.mirrors = mirrors.to_vec();
    Ok(RegistryClient::new(&opts))
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
        assert!(parse_size("2X").unwrap_err().contains("unknown suffix"));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err(), "overflow");
    }

    #[test]
    fn linuxkit_format_names_map_to_the_hybrid_outputs() {
        for (name, f) in [
            ("iso-bios", Format::Iso),
            ("iso-efi", Format::Iso),
            ("raw-bios", Format::Raw),
            ("raw-efi", Format::Raw),
            ("qcow2-bios", Format::Qcow2),
            ("qcow2-efi", Format::Qcow2),
            ("kernel+squashfs", Format::KernelSquashfs),
        ] {
            assert_eq!(name.parse::<Format>().unwrap(), f, "{name}");
        }
        assert!("vhd".parse::<Format>().is_err());
    }
}
