//! `smelt kernel check`: does a kernel have the options an output needs?
//!
//! Each [`Feature`] is one fragment in `kernel-configs/` (embedded here, so
//! the static binary needs no files): `CONFIG_X=y` or `CONFIG_X=y|m` lines,
//! each with a comment saying why (see `kernel-configs/README.md`). An
//! output needs a set of features ([`Target::features`]); [`check`] compares
//! them with a kernel's `.config` ([`KernelConfig`]) and lists what is
//! [`Missing`]. [`warn_for_build`] is the same check as warnings for
//! `smelt build`.
//!
//! Non-goals: Kconfig dependency resolution (an option a fragment needs is
//! checked as the `.config` states it), architectures other than x86-64,
//! and options only some specs need (the fragments say which, and why they
//! are left out).

mod config;
mod image;

use std::fmt;
use std::sync::OnceLock;

use serde::de::IntoDeserializer;

pub use config::{
    KernelConfig, MAX_CONFIG_BYTES, Need, ParseError, Requirement, Value, parse_fragment,
};
pub use image::{CONFIG_PLACES, KernelSource, config_in_tree, kernel_config, load_from_image};

use crate::artifacts::Format;
use crate::spec::{Compression, RootCompression};

/// A group of kernel options, one fragment file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// smelt's init and runc.
    Base,
    /// A gzip initramfs.
    InitrdGzip,
    /// A zstd initramfs.
    InitrdZstd,
    /// The squashfs root under an overlay.
    Squashfs,
    SquashfsZstd,
    SquashfsXz,
    SquashfsGzip,
    /// Finding the root on the ISO (CD, USB stick).
    Iso,
    /// Finding the root partition on a disk.
    Raw,
    /// Booting through systemd-stub under UEFI.
    Uefi,
}

impl Feature {
    pub const ALL: [Feature; 10] = [
        Feature::Base,
        Feature::InitrdGzip,
        Feature::InitrdZstd,
        Feature::Squashfs,
        Feature::SquashfsZstd,
        Feature::SquashfsXz,
        Feature::SquashfsGzip,
        Feature::Iso,
        Feature::Raw,
        Feature::Uefi,
    ];

    /// The fragment's file stem in `kernel-configs/`.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Base => "base",
            Feature::InitrdGzip => "initrd-gzip",
            Feature::InitrdZstd => "initrd-zstd",
            Feature::Squashfs => "squashfs",
            Feature::SquashfsZstd => "squashfs-zstd",
            Feature::SquashfsXz => "squashfs-xz",
            Feature::SquashfsGzip => "squashfs-gzip",
            Feature::Iso => "iso",
            Feature::Raw => "raw",
            Feature::Uefi => "uefi",
        }
    }

    /// The fragment's text, as committed in `kernel-configs/`.
    pub fn fragment(self) -> &'static str {
        match self {
            Feature::Base => include_str!("../kernel-configs/base.cfg"),
            Feature::InitrdGzip => include_str!("../kernel-configs/initrd-gzip.cfg"),
            Feature::InitrdZstd => include_str!("../kernel-configs/initrd-zstd.cfg"),
            Feature::Squashfs => include_str!("../kernel-configs/squashfs.cfg"),
            Feature::SquashfsZstd => include_str!("../kernel-configs/squashfs-zstd.cfg"),
            Feature::SquashfsXz => include_str!("../kernel-configs/squashfs-xz.cfg"),
            Feature::SquashfsGzip => include_str!("../kernel-configs/squashfs-gzip.cfg"),
            Feature::Iso => include_str!("../kernel-configs/iso.cfg"),
            Feature::Raw => include_str!("../kernel-configs/raw.cfg"),
            Feature::Uefi => include_str!("../kernel-configs/uefi.cfg"),
        }
    }

    /// The fragment's options, parsed once.
    pub fn requirements(self) -> &'static [Requirement] {
        static PARSED: OnceLock<Vec<Vec<Requirement>>> = OnceLock::new();
        let all = PARSED.get_or_init(|| {
            Feature::ALL
                .iter()
                .map(|f| {
                    let file = format!("kernel-configs/{}.cfg", f.name());
                    // Embedded at build time and parsed by a unit test.
                    parse_fragment(f.fragment(), &file).unwrap_or_else(|e| panic!("{e}"))
                })
                .collect()
        });
        &all[self as usize]
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Feature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What is being built: the outputs and the spec's compressors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub outputs: Vec<Format>,
    /// `initrd: {compression}` (kernel+initrd).
    pub initrd: Compression,
    /// `root: {compression}` (the squashfs outputs).
    pub root: RootCompression,
}

impl Target {
    /// The features the outputs need, sorted, each once.
    pub fn features(&self) -> Vec<Feature> {
        let mut out = Vec::new();
        for o in &self.outputs {
            match o {
                // The root tree only; what boots it is not smelt's.
                Format::Tar => {}
                Format::KernelInitrd => {
                    out.push(Feature::Base);
                    match self.initrd {
                        Compression::Gzip => out.push(Feature::InitrdGzip),
                        Compression::Zstd => out.push(Feature::InitrdZstd),
                        Compression::None => {}
                    }
                }
                squashfs => {
                    // Stage 1 is always a gzip initramfs (artifacts::stage1).
                    out.extend([Feature::Base, Feature::InitrdGzip, Feature::Squashfs]);
                    out.push(match self.root {
                        RootCompression::Zstd => Feature::SquashfsZstd,
                        RootCompression::Xz => Feature::SquashfsXz,
                        RootCompression::Gzip => Feature::SquashfsGzip,
                    });
                    match squashfs {
                        Format::Uki => out.push(Feature::Uefi),
                        Format::Iso => out.extend([Feature::Iso, Feature::Uefi]),
                        Format::Raw | Format::Qcow2 => out.extend([Feature::Raw, Feature::Uefi]),
                        _ => {}
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// `root: {compression}` from its spec name (`zstd`, `xz`, `gzip`).
pub fn parse_root_compression(s: &str) -> anyhow::Result<RootCompression> {
    use serde::Deserialize;
    RootCompression::deserialize(s.into_deserializer())
        .map_err(|e: serde::de::value::Error| anyhow::anyhow!("root compression {s:?}: {e}"))
}

/// `initrd: {compression}` from its spec name (`gzip`, `zstd`, `none`).
pub fn parse_initrd_compression(s: &str) -> anyhow::Result<Compression> {
    use serde::Deserialize;
    Compression::deserialize(s.into_deserializer())
        .map_err(|e: serde::de::value::Error| anyhow::anyhow!("initrd compression {s:?}: {e}"))
}

/// What the kernel has of an option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Has {
    NotSet,
    Module,
    BuiltIn,
    /// A string or number, as `="..."` or `=N`.
    Other(String),
}

impl Has {
    fn of(v: Option<&Value>) -> Has {
        match v {
            None | Some(Value::No) => Has::NotSet,
            Some(Value::Module) => Has::Module,
            Some(Value::Yes) => Has::BuiltIn,
            Some(Value::Number(n)) => Has::Other(format!("={n}")),
            Some(Value::Str(s)) => Has::Other(format!("={s:?}")),
        }
    }
}

impl fmt::Display for Has {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Has::NotSet => f.write_str("not set"),
            Has::Module => f.write_str("module"),
            Has::BuiltIn => f.write_str("built in"),
            Has::Other(v) => f.write_str(v),
        }
    }
}

/// An option a feature needs that the kernel lacks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Missing {
    /// `CONFIG_X`.
    pub option: String,
    #[serde(serialize_with = "need_str")]
    pub needed: Need,
    #[serde(serialize_with = "display_str")]
    pub has: Has,
    pub feature: Feature,
    pub reason: String,
}

fn need_str<S: serde::Serializer>(n: &Need, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(n.as_str())
}

fn display_str<S: serde::Serializer>(h: &Has, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(h)
}

impl fmt::Display for Missing {
    /// `MISSING CONFIG_X (needed =y or =m for iso: REASON), kernel has: not set`
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "MISSING {} (needed {} for {}: {}), kernel has: {}",
            self.option, self.needed, self.feature, self.reason, self.has
        )
    }
}

/// The options `features` need that `config` lacks, in fragment order. An
/// option several features list is reported once, for the first feature
/// whose need it fails.
pub fn check(config: &KernelConfig, features: &[Feature]) -> Vec<Missing> {
    let mut out: Vec<Missing> = Vec::new();
    for &f in features {
        for r in f.requirements() {
            let v = config.get(&r.option);
            if r.need.satisfied_by(v) || out.iter().any(|m| m.option == r.option) {
                continue;
            }
            out.push(Missing {
                option: r.option.clone(),
                needed: r.need,
                has: Has::of(v),
                feature: f,
                reason: r.reason.clone(),
            });
        }
    }
    out
}

/// The number of distinct options `features` need.
pub fn option_count(features: &[Feature]) -> usize {
    let mut names: Vec<&str> = features
        .iter()
        .flat_map(|f| f.requirements())
        .map(|r| r.option.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

/// The result of checking one kernel for a [`Target`]; `--json` prints it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The release, else the config header's version.
    pub kernel: String,
    /// Where the config came from.
    pub config: String,
    pub outputs: Vec<Format>,
    pub features: Vec<Feature>,
    /// Distinct options checked.
    pub checked: usize,
    pub missing: Vec<Missing>,
}

impl Report {
    pub fn new(source: &KernelSource, target: &Target) -> Result<Report, ParseError> {
        let config = source.parse()?;
        let features = target.features();
        Ok(Report {
            kernel: source.name(&config),
            config: source.origin.clone(),
            outputs: target.outputs.clone(),
            checked: option_count(&features),
            missing: check(&config, &features),
            features,
        })
    }

    /// `kernel R: N options missing for iso` or `kernel R: all N options
    /// for iso, raw present`.
    pub fn summary(&self) -> String {
        let outputs = join(&self.outputs);
        match self.missing.len() {
            0 => format!(
                "kernel {}: all {} options for {outputs} present",
                self.kernel, self.checked
            ),
            1 => format!("kernel {}: 1 option missing for {outputs}", self.kernel),
            n => format!("kernel {}: {n} options missing for {outputs}", self.kernel),
        }
    }

    /// One `MISSING` line per missing option, then the summary.
    pub fn lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self.missing.iter().map(|m| m.to_string()).collect();
        v.push(self.summary());
        v
    }
}

fn join(outputs: &[Format]) -> String {
    outputs
        .iter()
        .map(|o| o.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Warnings for `smelt build` before it writes `formats`: nothing when the
/// kernel has every option they need, else the `MISSING` lines and the
/// summary; one line saying the check did not run when there is no config
/// (`source` is `None`, see [`kernel_config`]) or it does not parse. The
/// caller logs each line as a warning.
pub fn warn_for_build(
    source: Option<&KernelSource>,
    formats: &[Format],
    initrd: Compression,
    root: RootCompression,
) -> Vec<String> {
    let mut outputs = formats.to_vec();
    outputs.sort();
    outputs.dedup();
    let target = Target {
        outputs,
        initrd,
        root,
    };
    if target.features().is_empty() {
        return Vec::new();
    }
    let outputs = join(&target.outputs);
    let Some(source) = source else {
        return vec![format!(
            "the kernel image carries no kernel config (looked for {CONFIG_PLACES}): \
             its options for {outputs} were not checked"
        )];
    };
    match Report::new(source, &target) {
        Ok(r) if r.missing.is_empty() => Vec::new(),
        Ok(r) => r.lines(),
        Err(e) => vec![format!(
            "kernel config {e}: its options for {outputs} were not checked"
        )],
    }
}

#[cfg(test)]
mod tests;
