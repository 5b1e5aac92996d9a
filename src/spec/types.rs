//! The spec's data types, one per YAML mapping.
//!
//! Field names and types follow LinuxKit's `moby` package (`config.go`, and
//! the JSON schema in `schema.go`): an existing LinuxKit spec deserialises
//! unchanged. Every optional YAML key is an `Option` so that "unset" differs
//! from "empty": LinuxKit's precedence (image config < label < YAML) needs it.
//! Types that end up in an OCI runtime `config.json` (mounts, resources, ID
//! mappings) use the OCI JSON field names and also derive `Serialize`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::oci::Reference;

/// Where a value came from: `file:line:column` (1-based, as editors count).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl Origin {
    pub(crate) fn from_location(file: &Arc<str>, loc: &serde_saphyr::Location) -> Origin {
        Origin {
            file: Arc::clone(file),
            line: loc.line(),
            column: loc.column(),
        }
    }
}

/// An image reference as written in the spec, parsed and remembering its
/// origin so that a later pull error can point at the spec line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The text as written, e.g. `linuxkit/init:v1.0.0`.
    pub text: String,
    /// The normalised reference.
    pub reference: Reference,
    pub(crate) origin: Origin,
}

impl ImageRef {
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<String>::deserialize(d)?;
        // The file name is filled in by the parser once the document is read.
        let origin = Origin {
            file: Arc::from(""),
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        };
        let reference = Reference::parse(&spanned.value).map_err(serde::de::Error::custom)?;
        Ok(ImageRef {
            text: spanned.value,
            reference,
            origin,
        })
    }
}

/// A user or group: LinuxKit accepts a number or a name (looked up in the
/// image's `/etc/passwd` / `/etc/group`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Id {
    Number(u32),
    Name(String),
}

// Hand-written rather than `untagged`, which buffers the value (losing its
// position) and reports only "did not match any variant".
impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a user or group name, or a number from 0 to 4294967295")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Id, E> {
                u32::try_from(v)
                    .map(Id::Number)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Id, E> {
                u32::try_from(v)
                    .map(Id::Number)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id::Name(v.to_string()))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// `kernel:`; every field overrides an earlier spec file's when set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    pub image: Option<ImageRef>,
    pub cmdline: Option<String>,
    /// Name of the kernel binary inside the image (LinuxKit default `kernel`).
    pub binary: Option<String>,
    /// Name of the modules tarball (LinuxKit default `kernel.tar`, `none` to skip).
    pub tar: Option<String>,
    /// Name of the CPU microcode cpio in the image.
    pub ucode: Option<String>,
}

/// An OCI mount as LinuxKit's `mounts:` takes it; empty type/source/destination
/// are defaulted when the bundle is generated.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// Written as OCI's `uidMappings`; LinuxKit's YAML spells it in lowercase.
    #[serde(
        rename(serialize = "uidMappings"),
        skip_serializing_if = "Option::is_none"
    )]
    pub uidmappings: Option<Vec<IdMapping>>,
    #[serde(
        rename(serialize = "gidMappings"),
        skip_serializing_if = "Option::is_none"
    )]
    pub gidmappings: Option<Vec<IdMapping>>,
}

/// A user-namespace ID mapping (OCI `LinuxIDMapping`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdMapping {
    #[serde(rename = "containerID", default)]
    pub container_id: u32,
    #[serde(rename = "hostID", default)]
    pub host_id: u32,
    #[serde(default)]
    pub size: u32,
}

/// `devices:` entry; `path: all` allows a whole device type in the cgroup.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    #[serde(default)]
    pub path: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    /// Octal file mode, e.g. `"0666"`.
    pub mode: Option<String>,
}

/// `runtime:`: settings applied by LinuxKit's init at run time, written to
/// `runtime.json` beside the bundle instead of the OCI config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mkdir: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<Interface>>,
    #[serde(rename = "bindNS", skip_serializing_if = "Option::is_none")]
    pub bind_ns: Option<BindNamespaces>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Accepted for older LinuxKit specs (its schema once had it).
    #[serde(rename = "noRestart", skip_serializing_if = "Option::is_none")]
    pub no_restart: Option<bool>,
}

/// `runtime.bindNS`: paths where namespaces are bind-mounted.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BindNamespaces {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mnt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
}

/// `runtime.interfaces` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(rename = "createInRoot", default)]
    pub create_in_root: bool,
}

/// `resources:` (OCI `LinuxResources`, camelCase names as in LinuxKit's schema).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceCgroup>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    #[serde(
        rename = "blockIO",
        alias = "blockio",
        skip_serializing_if = "Option::is_none"
    )]
    pub block_io: Option<BlockIo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hugepage_limits: Option<Vec<HugepageLimit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCgroup {
    #[serde(default)]
    pub allow: bool,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Memory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<i64>,
    #[serde(rename = "kernelTCP", skip_serializing_if = "Option::is_none")]
    pub kernel_tcp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller", skip_serializing_if = "Option::is_none")]
    pub disable_oom_killer: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_runtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mems: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pids {
    #[serde(default)]
    pub limit: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlockIo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_device: Option<Vec<WeightDevice>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_read_bps_device: Option<Vec<ThrottleDevice>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_write_bps_device: Option<Vec<ThrottleDevice>>,
    #[serde(
        rename = "throttleReadIOPSDevice",
        skip_serializing_if = "Option::is_none"
    )]
    pub throttle_read_iops_device: Option<Vec<ThrottleDevice>>,
    #[serde(
        rename = "throttleWriteIOPSDevice",
        skip_serializing_if = "Option::is_none"
    )]
    pub throttle_write_iops_device: Option<Vec<ThrottleDevice>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeightDevice {
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleDevice {
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    #[serde(default)]
    pub rate: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HugepageLimit {
    #[serde(default)]
    pub page_size: String,
    #[serde(default)]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(rename = "classID", skip_serializing_if = "Option::is_none")]
    pub class_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priorities: Option<Vec<InterfacePriority>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterfacePriority {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub priority: u32,
}

/// Declares a struct with LinuxKit's `ImageConfig` fields (the subset valid
/// in an `org.mobyproject.config` label) after the given leading fields, so
/// [`Image`] and [`ImageConfig`] cannot drift apart.
macro_rules! image_config_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            pub capabilities: Option<Vec<String>>,
            #[serde(rename = "capabilities.add")]
            pub capabilities_add: Option<Vec<String>>,
            pub ambient: Option<Vec<String>>,
            pub mounts: Option<Vec<Mount>>,
            pub binds: Option<Vec<String>>,
            #[serde(rename = "binds.add")]
            pub binds_add: Option<Vec<String>>,
            pub devices: Option<Vec<Device>>,
            pub tmpfs: Option<Vec<String>>,
            pub command: Option<Vec<String>>,
            pub env: Option<Vec<String>>,
            pub cwd: Option<String>,
            pub net: Option<String>,
            pub pid: Option<String>,
            pub ipc: Option<String>,
            pub uts: Option<String>,
            pub userns: Option<String>,
            pub hostname: Option<String>,
            pub readonly: Option<bool>,
            pub masked_paths: Option<Vec<String>>,
            pub readonly_paths: Option<Vec<String>>,
            pub uid: Option<Id>,
            pub gid: Option<Id>,
            pub additional_gids: Option<Vec<Id>>,
            pub no_new_privileges: Option<bool>,
            pub oom_score_adj: Option<i64>,
            pub rootfs_propagation: Option<String>,
            pub cgroups_path: Option<String>,
            pub resources: Option<Resources>,
            pub sysctl: Option<BTreeMap<String, String>>,
            pub rlimits: Option<Vec<String>>,
            pub uid_mappings: Option<Vec<IdMapping>>,
            pub gid_mappings: Option<Vec<IdMapping>>,
            pub annotations: Option<BTreeMap<String, String>>,
            pub runtime: Option<Runtime>,
        }
    };
}

image_config_struct! {
    /// One `onboot`, `onshutdown` or `services` entry.
    Image {
        /// Container name; unique among services.
        name: String,
        /// The image to run.
        image: ImageRef,
    }
}

image_config_struct! {
    #[derive(Default)]
    /// The `org.mobyproject.config` image label: an [`Image`] without name
    /// and image (LinuxKit rejects those keys in a label).
    ImageConfig {}
}

impl Image {
    /// Where the `image:` value was written.
    pub fn origin(&self) -> &Origin {
        &self.image.origin
    }
}

/// A `files:` entry: something written into the root at build time.
///
/// Exactly one of `contents`, `source`, `directory: true`, `symlink` or
/// `metadata` must be given (checked by the validator, following LinuxKit's
/// `filesystem()` in `moby/build.go`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Path in the root; a leading `/` is allowed and ignored, `..` is not.
    pub path: String,
    pub directory: Option<bool>,
    pub symlink: Option<String>,
    pub contents: Option<String>,
    /// Host file to copy; `~/` is the user's home, as in LinuxKit.
    pub source: Option<String>,
    /// `yaml`: write the spec itself (LinuxKit's only metadata kind).
    pub metadata: Option<String>,
    /// Skip the entry when `source` does not exist.
    pub optional: Option<bool>,
    /// Octal mode string, e.g. `"0644"`.
    pub mode: Option<String>,
    pub uid: Option<Id>,
    pub gid: Option<Id>,
    #[serde(skip)]
    pub(crate) origin: Origin,
}

impl File {
    /// Where this entry starts in the spec.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// A `volumes:` entry (LinuxKit ≥ 1.0): a named directory, optionally filled
/// from an image, shared into containers by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    pub image: Option<ImageRef>,
    pub readonly: Option<bool>,
    pub format: Option<String>,
    pub platforms: Option<Vec<String>>,
    #[serde(skip)]
    pub(crate) origin: Origin,
}

impl Volume {
    /// Where this entry starts in the spec.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// `trust:` is deprecated in LinuxKit and ignored; it is accepted so old
/// specs still parse.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    pub image: Option<Vec<String>>,
    pub org: Option<Vec<String>>,
}

/// Compression of the kernel+initrd initramfs (smelt's `initrd:` key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

/// smelt's top-level `slots: { size }`: the config slot of raw, ISO and
/// qcow2 outputs (docs/slots.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotsOptions {
    /// Bytes of the NoCloud slot: whole MiB from 1 MiB to 256 MiB.
    pub size: Option<ByteSize>,
}

impl SlotsOptions {
    /// 4 MiB: a seed with a few scripts and keys, FAT12.
    pub const DEFAULT_SIZE: u64 = 4 << 20;
    pub const MIN_SIZE: u64 = 1 << 20;
    pub const MAX_SIZE: u64 = 256 << 20;

    pub fn effective_size(&self) -> u64 {
        self.size.map_or(Self::DEFAULT_SIZE, |s| s.0)
    }
}

/// A size in bytes: a number, or a number with a binary suffix `K`, `M`,
/// `G`, `T` (either case, optionally `KiB`, `MiB`, `GiB`, `TiB`): `4M`,
/// `64MiB`, `2g`, `1048576`. The one size parser: the spec's `slots.size`
/// and `smelt build --size` both use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim_start();
        let shift = match unit.to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KIB" => 10,
            "M" | "MIB" => 20,
            "G" | "GIB" => 30,
            "T" | "TIB" => 40,
            _ => return Err(format!("unknown size unit {unit:?} (use K, M, G or T)")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a size such as 4M"))?;
        n.checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 4M or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size {v} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// smelt's top-level `initrd: { compression, level }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitrdOptions {
    #[serde(default)]
    pub compression: Compression,
    /// Compression level; `None` means the default for the compression.
    pub level: Option<i32>,
}

impl InitrdOptions {
    /// gzip's own default (and LinuxKit's, through Go's compress/gzip):
    /// level 9 costs about 2.5× the time for well under 1% in size.
    pub const DEFAULT_GZIP_LEVEL: i32 = 6;
    /// zstd's own default; raise it in the spec for smaller initrds.
    pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

    /// The level to use, with the documented defaults filled in (0 for none).
    pub fn effective_level(&self) -> i32 {
        match (self.compression, self.level) {
            (_, Some(l)) => l,
            (Compression::Gzip, None) => Self::DEFAULT_GZIP_LEVEL,
            (Compression::Zstd, None) => Self::DEFAULT_ZSTD_LEVEL,
            (Compression::None, None) => 0,
        }
    }

    /// The range of levels the compression accepts.
    pub fn level_range(&self) -> std::ops::RangeInclusive<i32> {
        match self.compression {
            Compression::Gzip => 1..=9,
            Compression::Zstd => 1..=22,
            Compression::None => 0..=0,
        }
    }
}

/// Compression of the squashfs root (smelt's `root:` key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RootCompression {
    #[default]
    Zstd,
    Xz,
    Gzip,
}

/// smelt's top-level `root:`: how the root is written for the boot media
/// (`kernel+squashfs`, `iso`, `raw`, `qcow2`). `root: squashfs` is the
/// shorthand for all defaults; a mapping sets the compressor:
/// `root: { compression: xz, level: 6, block_size: 131072 }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootOptions {
    /// Only `squashfs` (the default).
    #[serde(default)]
    pub fs: RootFs,
    #[serde(default)]
    pub compression: RootCompression,
    /// `None`: zstd 15 and xz 6 (mksquashfs's defaults), gzip 9.
    pub level: Option<i32>,
    /// Bytes, a power of two from 4 KiB to 1 MiB; default 128 KiB.
    pub block_size: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootFs {
    #[default]
    Squashfs,
}

impl RootOptions {
    pub const DEFAULT_BLOCK_SIZE: u32 = 128 * 1024;

    /// The level in effect, defaults filled in.
    pub fn effective_level(&self) -> i32 {
        match (self.compression, self.level) {
            (_, Some(l)) => l,
            (RootCompression::Zstd, None) => 15,
            (RootCompression::Xz, None) => 6,
            (RootCompression::Gzip, None) => 9,
        }
    }

    pub fn level_range(&self) -> std::ops::RangeInclusive<i32> {
        match self.compression {
            RootCompression::Zstd => 1..=22,
            RootCompression::Xz => 0..=9,
            RootCompression::Gzip => 1..=9,
        }
    }

    pub fn effective_block_size(&self) -> u32 {
        self.block_size.unwrap_or(Self::DEFAULT_BLOCK_SIZE)
    }
}

/// `root: squashfs` or a mapping (see [`RootOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootKey(pub RootOptions);

impl<'de> Deserialize<'de> for RootKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RootKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`squashfs` or a mapping with fs, compression, level, block_size")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RootKey, E> {
                match v {
                    "squashfs" => Ok(RootKey(RootOptions::default())),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RootKey, A::Error> {
                RootOptions::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RootKey)
            }
        }
        d.deserialize_any(V)
    }
}
