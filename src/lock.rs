//! Lock files: the digest every image reference of a build resolved to.
//!
//! `NAME.lock` sits next to the first spec file. It is JSON (and so also
//! YAML), with a schema id and version, sorted keys, and a size limit
//! checked before parsing:
//!
//! ```json
//! { "schema": "smelt.lock/v1",
//!   "images": { "docker.io/smelt/busybox:latest": "sha256:…" } }
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

pub const SCHEMA: &str = "smelt.lock/v1";
/// Lock files larger than this are refused unread (bytes).
pub const MAX_SIZE: u64 = 4 << 20;

#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub schema: String,
    /// Image reference (normalised, as written in the spec) → manifest digest.
    pub images: BTreeMap<String, String>,
}

impl LockFile {
    pub fn from_pins(images: BTreeMap<String, String>) -> LockFile {
        LockFile {
            schema: SCHEMA.to_string(),
            images,
        }
    }

    /// Read `path`; a missing file is an empty lock.
    pub fn read(path: &Path) -> anyhow::Result<LockFile> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockFile::default()),
            Err(e) => {
                return Err(e).with_context(|| format!("reading lock file {}", path.display()));
            }
        };
        if meta.len() > MAX_SIZE {
            bail!(
                "lock file {} is {} bytes, more than the {MAX_SIZE} allowed",
                path.display(),
                meta.len()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading lock file {}", path.display()))?;
        let lock: LockFile = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a smelt lock file", path.display()))?;
        if lock.schema != SCHEMA {
            bail!(
                "{}: unsupported lock schema {:?} (expected {SCHEMA})",
                path.display(),
                lock.schema
            );
        }
        Ok(lock)
    }

    /// Fail unless every pin matches this lock (for `--locked`).
    pub fn check(&self, path: &Path, pins: &BTreeMap<String, String>) -> anyhow::Result<()> {
        for (reference, digest) in pins {
            match self.images.get(reference) {
                Some(locked) if locked == digest => {}
                Some(locked) => bail!(
                    "{reference} now resolves to {digest}, but {} pins {locked} (--locked)",
                    path.display()
                ),
                None => bail!(
                    "{reference} is not in {} (--locked); build once without --locked to record it",
                    path.display()
                ),
            }
        }
        Ok(())
    }

    /// Write atomically (temp file + rename); unchanged content is not rewritten.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("writing lock file {}", path.display()))?;
        tmp.write_all(text.as_bytes())?;
        // Lock files are meant to be committed and shared: world-readable.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )?;
        tmp.persist(path)
            .with_context(|| format!("writing lock file {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins(d: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("docker.io/smelt/busybox:latest".to_string(), d.to_string())])
    }

    #[test]
    fn round_trip_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        assert_eq!(LockFile::read(&p).unwrap(), LockFile::default());
        LockFile::from_pins(pins("sha256:aa")).write(&p).unwrap();
        let l = LockFile::read(&p).unwrap();
        l.check(&p, &pins("sha256:aa")).unwrap();
        let e = l.check(&p, &pins("sha256:bb")).unwrap_err().to_string();
        assert!(
            e.contains("now resolves to sha256:bb") && e.contains("pins sha256:aa"),
            "{e}"
        );
        let e = LockFile::default()
            .check(&p, &pins("sha256:aa"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not in"), "{e}");
    }

    #[test]
    fn rejects_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        std::fs::write(&p, r#"{"schema":"other/v9","images":{}}"#).unwrap();
        assert!(
            LockFile::read(&p)
                .unwrap_err()
                .to_string()
                .contains("unsupported lock schema")
        );
        std::fs::write(&p, "garbage").unwrap();
        assert!(LockFile::read(&p).is_err());
    }
}
