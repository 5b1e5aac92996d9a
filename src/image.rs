//! `smelt image pack|push|ls`: base images made from directories, without
//! Docker, and copied to registries.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use crate::digest::{Digest, HashingWriter};
use crate::oci::{Reference, Store, StoreEntry};
use crate::tree::FsTree;

/// Pack `dir` into a one-layer image tagged with every reference in `tags`.
/// Deterministic: sorted entries, mtime `SOURCE_DATE_EPOCH`, owner 0:0
/// unless `owners` (see docs/images.md) says otherwise.
pub fn pack(
    store: &Store,
    dir: &Path,
    tags: &[Reference],
    config: Option<&Path>,
    owners: Option<&Path>,
) -> anyhow::Result<Digest> {
    let Some(first) = tags.first() else {
        bail!("image pack needs at least one --tag");
    };
    let epoch = crate::build::source_date_epoch()?;
    let manifest = match owners {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let tree =
        FsTree::from_host_dir(dir, manifest.as_deref(), epoch).map_err(|e| match owners {
            Some(p) => anyhow::anyhow!("{}: {e}", p.display()),
            None => anyhow::anyhow!("{}: {e}", dir.display()),
        })?;
    let image_config = image_config(config, epoch)?;

    // tar → (diff_id hash) → gzip → temp file in the store.
    let mut tmp = tempfile::NamedTempFile::new_in(store.root())?;
    let diff_id = {
        let gz = crate::compress::writer(
            crate::compress::Compression::Gzip { level: 6 },
            tmp.as_file_mut(),
        )?;
        let mut hashing = HashingWriter::new(gz);
        crate::formats::tar::write_tar(
            &tree,
            &mut hashing,
            &crate::formats::tar::TarOptions::default(),
        )?;
        hashing.flush()?;
        let d = hashing.digest();
        hashing.into_inner().finish()?;
        d
    };
    let digest = store.import_image(tmp.path(), &diff_id, image_config, first)?;
    for t in &tags[1..] {
        store.tag(t, &digest, crate::oci::manifest::OCI_MANIFEST)?;
    }
    Ok(digest)
}

pub fn push(
    store: &Store,
    local: &Reference,
    dest: &Reference,
    mirrors: &[(String, String)],
    progress: bool,
) -> anyhow::Result<Digest> {
    let client = crate::oci::registry_client(mirrors)?;
    let reporter = crate::progress::Reporter::new(progress);
    crate::oci::push(store, local, dest, &client, &reporter)
        .with_context(|| format!("pushing {local} to {dest}"))
}

/// One line of `smelt image ls`.
#[derive(Debug, serde::Serialize)]
pub struct Listing {
    pub reference: String,
    pub digest: Digest,
    /// Bytes in the store: manifest, config and (compressed) layers.
    pub size: u64,
}

pub fn list(store: &Store) -> anyhow::Result<Vec<Listing>> {
    store
        .list()?
        .into_iter()
        .map(|e: StoreEntry| {
            let image = store
                .image(&e.digest)
                .with_context(|| format!("reading {} from the store", e.reference))?;
            let size = image.manifest_bytes.len() as u64
                + image.manifest.config.size
                + image.layers.iter().map(|l| l.size).sum::<u64>();
            Ok(Listing {
                reference: e.reference,
                digest: e.digest,
                size,
            })
        })
        .collect()
}

/// The image config for `pack`: `--config FILE` (a whole OCI image config,
/// or only its `config` object), with architecture and OS set to
/// linux/amd64 and `created` fixed to `epoch` for reproducibility.
fn image_config(
    path: Option<&Path>,
    epoch: i64,
) -> anyhow::Result<oci_spec::image::ImageConfiguration> {
    let mut value = match path {
        None => serde_json::json!({}),
        Some(p) => {
            let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice::<serde_json::Value>(&text)
                .with_context(|| format!("{}: not JSON", p.display()))?
        }
    };
    let Some(obj) = value.as_object_mut() else {
        bail!(
            "{}: expected a JSON object",
            path.map(|p| p.display().to_string()).unwrap_or_default()
        );
    };
    // A bare `config` object (Env, Cmd, ...) is wrapped into an image config.
    let is_bare = !obj.contains_key("config")
        && !obj.contains_key("rootfs")
        && !obj.contains_key("architecture");
    if is_bare {
        value = serde_json::json!({ "config": value });
    }
    let obj = value.as_object_mut().context("image config")?;
    obj.insert("architecture".into(), "amd64".into());
    obj.insert("os".into(), "linux".into());
    obj.insert("created".into(), rfc3339(epoch).into());
    obj.insert(
        "rootfs".into(),
        serde_json::json!({ "type": "layers", "diff_ids": [] }),
    );
    serde_json::from_value(value).with_context(|| {
        format!(
            "{}: not an OCI image config",
            path.map(|p| p.display().to_string()).unwrap_or_default()
        )
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, H. Hinnant).
fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn bare_config_is_wrapped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, r#"{"Env":["A=1"],"Cmd":["/bin/sh"]}"#).unwrap();
        let c = image_config(Some(&p), 0).unwrap();
        let cfg = c.config().as_ref().unwrap();
        assert_eq!(cfg.env().as_ref().unwrap(), &vec!["A=1".to_string()]);
        std::fs::write(&p, "[1]").unwrap();
        assert!(
            image_config(Some(&p), 0)
                .unwrap_err()
                .to_string()
                .contains("expected a JSON object")
        );
    }
}
