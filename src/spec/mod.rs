//! The YAML spec: LinuxKit's schema plus smelt's few additions, parsed,
//! validated and merged.
//!
//! Scope: turning one or more spec files into a [`Spec`] whose image
//! references are parsed and carry their `file:line:column` ([`Origin`]).
//! Non-goals: pulling images, reading `files[].source` from the host, and
//! LinuxKit's `@pkg:` templates (those need a package build tree).
//!
//! # Schema
//!
//! LinuxKit's keys are accepted unchanged (see `moby/config.go` and
//! `moby/schema.go` in linuxkit/linuxkit): `kernel` (image, cmdline, binary,
//! tar, ucode), `init` (image references), `onboot`, `onshutdown`,
//! `services` (lists of [`Image`]), `files` ([`File`]), `volumes`
//! ([`Volume`]) and the deprecated `trust`, which is parsed and ignored.
//! Unknown keys anywhere are errors.
//!
//! smelt adds top-level keys: the initrd's compression
//!
//! ```yaml
//! initrd:
//!   compression: zstd   # gzip (default) | zstd | none
//!   level: 19           # gzip 1-9, default 6; zstd 1-22, default 3; none: unset
//! ```
//!
//! and the size of the config slot of raw, ISO and qcow2 outputs
//! (docs/slots.md):
//!
//! ```yaml
//! slots:
//!   size: 4M            # whole MiB, 1M-256M, default 4M
//! ```
//!
//! # Merging
//!
//! Several files merge as LinuxKit's `AppendConfig` does: kernel fields (and
//! smelt's `initrd`) of a later file override earlier ones when set; `init`,
//! `onboot`, `onshutdown`, `services`, `files` and `volumes` append. Service
//! and volume names must stay unique across the merged spec.
//!
//! # Errors
//!
//! Every error names `file:line:column` and, where it can, the YAML path,
//! e.g. `spec.yml:12:5: unknown field "imagee" in services[1]`. YAML and type
//! errors stop parsing at the first; semantic checks report all they find.

mod locate;
mod types;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub use types::*;
pub use validate::parse_mode;

/// One problem in a spec, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("reading spec {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// One or more located problems; displayed one per line.
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
}

fn display_all(diags: &[Diagnostic]) -> String {
    let lines: Vec<String> = diags.iter().map(Diagnostic::to_string).collect();
    lines.join("\n")
}

impl SpecError {
    /// The located problems (empty for I/O errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Read { .. } => &[],
            SpecError::Invalid(d) => d,
        }
    }
}

/// A parsed, validated (and possibly merged) spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    pub kernel: Option<Kernel>,
    pub init: Vec<ImageRef>,
    pub onboot: Vec<Image>,
    pub onshutdown: Vec<Image>,
    pub services: Vec<Image>,
    pub files: Vec<File>,
    pub volumes: Vec<Volume>,
    /// smelt's `initrd:`; `None` when no file set it (see [`Spec::initrd_options`]).
    pub initrd: Option<InitrdOptions>,
    /// smelt's `root:`; `None` when no file set it (see [`Spec::root_options`]).
    pub root: Option<RootOptions>,
    /// smelt's `slots:`; `None` when no file set it (see [`Spec::slot_size`]).
    pub slots: Option<SlotsOptions>,
    /// The text of every spec file, in merge order (for `metadata: yaml`).
    pub sources: Vec<String>,
}

/// The document as written; converted to [`Spec`] after validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    kernel: Option<Kernel>,
    init: Option<Vec<ImageRef>>,
    onboot: Option<Vec<Image>>,
    onshutdown: Option<Vec<Image>>,
    services: Option<Vec<Image>>,
    files: Option<Vec<Spanned<File>>>,
    volumes: Option<Vec<Spanned<Volume>>>,
    #[allow(dead_code)] // deprecated in LinuxKit: accepted, ignored
    trust: Option<Trust>,
    initrd: Option<Spanned<InitrdOptions>>,
    root: Option<Spanned<RootKey>>,
    slots: Option<Spanned<SlotsOptions>>,
}

impl Spec {
    /// Appends `other` as LinuxKit's `AppendConfig` does (see module docs).
    pub fn merge(&mut self, other: Spec) {
        if let Some(k) = other.kernel {
            let mine = self.kernel.get_or_insert_with(Kernel::default);
            if k.image.is_some() {
                mine.image = k.image;
            }
            if k.cmdline.is_some() {
                mine.cmdline = k.cmdline;
            }
            if k.binary.is_some() {
                mine.binary = k.binary;
            }
            if k.tar.is_some() {
                mine.tar = k.tar;
            }
            if k.ucode.is_some() {
                mine.ucode = k.ucode;
            }
        }
        self.init.extend(other.init);
        self.onboot.extend(other.onboot);
        self.onshutdown.extend(other.onshutdown);
        self.services.extend(other.services);
        self.files.extend(other.files);
        self.volumes.extend(other.volumes);
        if other.initrd.is_some() {
            self.initrd = other.initrd;
        }
        if other.root.is_some() {
            self.root = other.root;
        }
        if other.slots.is_some() {
            self.slots = other.slots;
        }
        self.sources.extend(other.sources);
    }

    /// The spec as YAML, for `files: - metadata: yaml`: the spec files as
    /// written, one YAML document each.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for (i, text) in self.sources.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// The initrd options in effect (defaults when unset).
    pub fn initrd_options(&self) -> InitrdOptions {
        self.initrd.unwrap_or_default()
    }

    /// The squashfs root options in effect (defaults when unset).
    pub fn root_options(&self) -> RootOptions {
        self.root.unwrap_or_default()
    }

    /// Bytes of the config slot (`slots.size`, default 4 MiB).
    pub fn slot_size(&self) -> u64 {
        self.slots.unwrap_or_default().effective_size()
    }

    /// Every image reference in the spec, in spec order: kernel, init,
    /// onboot, onshutdown, services, volumes.
    pub fn image_refs(&self) -> Vec<&ImageRef> {
        let mut refs: Vec<&ImageRef> = Vec::new();
        refs.extend(self.kernel.as_ref().and_then(|k| k.image.as_ref()));
        refs.extend(self.init.iter());
        for list in [&self.onboot, &self.onshutdown, &self.services] {
            refs.extend(list.iter().map(|i| &i.image));
        }
        refs.extend(self.volumes.iter().filter_map(|v| v.image.as_ref()));
        refs
    }
}

/// Reads, parses and merges spec files in order.
pub fn load(paths: &[PathBuf]) -> Result<Spec, SpecError> {
    let mut spec = Spec::default();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.clone(),
            source,
        })?;
        spec.merge(parse_str(&display_name(path), &text)?);
    }
    let diags = validate::unique_names(&spec);
    if diags.is_empty() {
        Ok(spec)
    } else {
        Err(SpecError::Invalid(diags))
    }
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Parses and validates one spec document; `file_name` is used in origins.
pub fn parse_str(file_name: &str, text: &str) -> Result<Spec, SpecError> {
    let file: Arc<str> = Arc::from(file_name);
    let raw: RawSpec = serde_saphyr::from_str(text)
        .map_err(|e| SpecError::Invalid(vec![yaml_diagnostic(&file, text, &e)]))?;
    let mut spec = Spec {
        kernel: raw.kernel,
        init: raw.init.unwrap_or_default(),
        onboot: raw.onboot.unwrap_or_default(),
        onshutdown: raw.onshutdown.unwrap_or_default(),
        services: raw.services.unwrap_or_default(),
        files: spanned_with_origin(&file, raw.files, |f, o| f.origin = o),
        volumes: spanned_with_origin(&file, raw.volumes, |v, o| v.origin = o),
        initrd: None,
        root: None,
        slots: None,
        sources: vec![text.to_string()],
    };
    set_file(&mut spec, &file);
    let mut diags = Vec::new();
    if let Some(initrd) = raw.initrd {
        let origin = Origin::from_location(&file, &initrd.referenced);
        diags.extend(validate::initrd(&initrd.value, &origin));
        spec.initrd = Some(initrd.value);
    }
    if let Some(root) = raw.root {
        let origin = Origin::from_location(&file, &root.referenced);
        diags.extend(validate::root(&root.value.0, &origin));
        spec.root = Some(root.value.0);
    }
    if let Some(slots) = raw.slots {
        let origin = Origin::from_location(&file, &slots.referenced);
        diags.extend(validate::slots(&slots.value, &origin));
        spec.slots = Some(slots.value);
    }
    diags.extend(validate::files(&mut spec.files));
    diags.extend(validate::unique_names(&spec));
    if diags.is_empty() {
        Ok(spec)
    } else {
        Err(SpecError::Invalid(diags))
    }
}

fn spanned_with_origin<T>(
    file: &Arc<str>,
    items: Option<Vec<Spanned<T>>>,
    set: impl Fn(&mut T, Origin),
) -> Vec<T> {
    items
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let mut v = s.value;
            set(&mut v, Origin::from_location(file, &s.referenced));
            v
        })
        .collect()
}

/// Image references are deserialised before the file name is known.
fn set_file(spec: &mut Spec, file: &Arc<str>) {
    let mut refs: Vec<&mut ImageRef> = Vec::new();
    refs.extend(spec.kernel.as_mut().and_then(|k| k.image.as_mut()));
    refs.extend(spec.init.iter_mut());
    for list in [&mut spec.onboot, &mut spec.onshutdown, &mut spec.services] {
        refs.extend(list.iter_mut().map(|i| &mut i.image));
    }
    refs.extend(spec.volumes.iter_mut().filter_map(|v| v.image.as_mut()));
    for r in refs {
        r.origin.file = Arc::clone(file);
    }
}

/// Turns a serde-saphyr error into `file:line:column: message [in path]`.
fn yaml_diagnostic(file: &Arc<str>, text: &str, err: &serde_saphyr::Error) -> Diagnostic {
    let loc = err.location();
    let origin = match &loc {
        Some(l) => Origin::from_location(file, l),
        None => Origin {
            file: Arc::clone(file),
            line: 0,
            column: 0,
        },
    };
    let mut message = plain_message(err);
    if let Some(found) = loc.and_then(|l| locate::find(text, l.line(), l.column())) {
        // Errors about a mapping's keys read "... in services[1]"; errors
        // about a value are prefixed with its path.
        let about_keys = ["unknown field", "missing field", "duplicate field"]
            .iter()
            .any(|p| message.starts_with(p));
        let path = match found {
            locate::Found::Key { map_path, .. } if about_keys => {
                if !map_path.is_empty() {
                    message = format!("{message} in {map_path}");
                }
                None
            }
            locate::Found::Key { map_path, key } if map_path.is_empty() => Some(key),
            locate::Found::Key { map_path, key } => Some(format!("{map_path}.{key}")),
            locate::Found::Value { path } => Some(path),
        };
        if let Some(path) = path {
            message = format!("{path}: {message}");
        }
    }
    Diagnostic { origin, message }
}

/// The error text without serde-saphyr's position suffix and snippet, with
/// serde's backquotes turned into double quotes.
fn plain_message(err: &serde_saphyr::Error) -> String {
    let text = err.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default();
    let trimmed = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // serde lists every accepted key after an unknown one; the YAML path
    // appended by the caller is more useful and keeps the line short.
    let trimmed = match trimmed.find(", expected one of ") {
        Some(i) if trimmed.starts_with("unknown field") => &trimmed[..i],
        _ => trimmed,
    };
    trimmed.replace('`', "\"")
}

#[cfg(test)]
mod tests;
