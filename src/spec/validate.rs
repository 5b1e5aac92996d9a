//! Checks serde cannot express: unique names, `files` entries, `initrd`
//! levels. Each check returns every problem it finds.

use std::collections::BTreeMap;

use super::{Diagnostic, File, Image, InitrdOptions, Origin, RootOptions, SlotsOptions, Spec};

fn diag(origin: &Origin, message: String) -> Diagnostic {
    Diagnostic {
        origin: origin.clone(),
        message,
    }
}

/// Container names become bundle directory names; service and volume names
/// must be unique (LinuxKit's `uniqueServices` / `uniqueVolumes`).
pub(super) fn unique_names(spec: &Spec) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (section, list) in [
        ("onboot", &spec.onboot),
        ("onshutdown", &spec.onshutdown),
        ("services", &spec.services),
    ] {
        for (i, image) in list.iter().enumerate() {
            out.extend(check_name(section, i, image));
        }
    }
    let mut seen: BTreeMap<&str, &Origin> = BTreeMap::new();
    for s in &spec.services {
        if let Some(first) = seen.insert(&s.name, s.origin()) {
            let msg = format!(
                "duplicate service name {:?} (first defined at {first})",
                s.name
            );
            out.push(diag(s.origin(), msg));
        }
    }
    let mut seen: BTreeMap<&str, &Origin> = BTreeMap::new();
    for v in &spec.volumes {
        // LinuxKit's nameRE: `^[a-z0-9_-]*$`
        let valid = v
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid || v.name.is_empty() {
            out.push(diag(
                v.origin(),
                format!("invalid volume name {:?}", v.name),
            ));
        }
        if let Some(first) = seen.insert(&v.name, v.origin()) {
            let msg = format!(
                "duplicate volume name {:?} (first defined at {first})",
                v.name
            );
            out.push(diag(v.origin(), msg));
        }
    }
    out
}

fn check_name(section: &str, index: usize, image: &Image) -> Option<Diagnostic> {
    let bad = image.name.is_empty()
        || image.name == "."
        || image.name == ".."
        || image.name.contains('/')
        || image.name.contains('\0');
    bad.then(|| {
        let msg = format!(
            "invalid name {:?} in {section}[{index}]: must be non-empty and a single path component",
            image.name
        );
        diag(image.origin(), msg)
    })
}

/// Validates and normalises `files` entries (LinuxKit's `filesystem()` in
/// `moby/build.go`): path inside the root, exactly one content kind, octal
/// mode, known metadata kind.
pub(super) fn files(files: &mut [File]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for f in files.iter_mut() {
        match normalise_path(&f.path) {
            Ok(p) => f.path = p,
            Err(why) => out.push(diag(&f.origin, format!("file path {:?} {why}", f.path))),
        }
        let kinds: Vec<&str> = [
            ("contents", f.contents.is_some()),
            ("source", f.source.is_some()),
            ("directory", f.directory == Some(true)),
            ("symlink", f.symlink.is_some()),
            ("metadata", f.metadata.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        match kinds.len() {
            1 => {}
            0 => out.push(diag(
                &f.origin,
                format!(
                    "file {:?} needs one of contents, source, directory, symlink or metadata",
                    f.path
                ),
            )),
            _ => out.push(diag(
                &f.origin,
                format!(
                    "file {:?} sets {} together; use exactly one",
                    f.path,
                    kinds.join(" and ")
                ),
            )),
        }
        if let Some(m) = &f.metadata
            && m != "yaml"
        {
            let msg = format!(
                "file {:?}: unsupported metadata {m:?} (only \"yaml\")",
                f.path
            );
            out.push(diag(&f.origin, msg));
        }
        if let Some(mode) = &f.mode
            && parse_mode(mode).is_none()
        {
            let msg = format!("file {:?}: mode {mode:?} is not an octal mode", f.path);
            out.push(diag(&f.origin, msg));
        }
    }
    out
}

/// Parses an octal mode string (`"0644"`, `"755"`) up to `0o7777`.
pub fn parse_mode(mode: &str) -> Option<u32> {
    u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777)
}

/// Strips a leading `/` (LinuxKit writes tar paths relative to the root),
/// drops `.` and empty components, rejects `..`.
fn normalise_path(path: &str) -> Result<String, &'static str> {
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("must not contain \"..\" (it would escape the root)"),
            c if c.contains('\0') => return Err("must not contain NUL"),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err("must name something below the root");
    }
    Ok(parts.join("/"))
}

/// The level must suit the compression.
pub(super) fn initrd(opts: &InitrdOptions, origin: &Origin) -> Option<Diagnostic> {
    let level = opts.level?;
    let range = opts.level_range();
    (!range.contains(&level)).then(|| {
        let msg = format!(
            "initrd level {level} out of range {}..={} for {:?} compression",
            range.start(),
            range.end(),
            opts.compression
        );
        diag(origin, msg.to_lowercase())
    })
}

/// The squashfs level must suit the compression; the block size must be a
/// power of two from 4 KiB to 1 MiB (squashfs's limits).
pub(super) fn root(opts: &RootOptions, origin: &Origin) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(level) = opts.level {
        let range = opts.level_range();
        if !range.contains(&level) {
            out.push(diag(
                origin,
                format!(
                    "root level {level} out of range {}..={} for {:?} compression",
                    range.start(),
                    range.end(),
                    opts.compression
                )
                .to_lowercase(),
            ));
        }
    }
    if let Some(b) = opts.block_size
        && (!b.is_power_of_two() || !(4096..=1 << 20).contains(&b))
    {
        out.push(diag(
            origin,
            format!("root block_size {b} must be a power of two from 4096 to 1048576"),
        ));
    }
    out
}

/// The slot size: whole MiB from 1 MiB to 256 MiB.
pub(super) fn slots(opts: &SlotsOptions, origin: &Origin) -> Option<Diagnostic> {
    let size = opts.size?.0;
    let (min, max) = (SlotsOptions::MIN_SIZE, SlotsOptions::MAX_SIZE);
    (size % (1 << 20) != 0 || !(min..=max).contains(&size)).then(|| {
        diag(
            origin,
            format!("slots size {size} must be a whole number of MiB from 1M to 256M"),
        )
    })
}
