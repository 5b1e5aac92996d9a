//! The local store: an OCI image layout (image-spec `image-layout.md`:
//! `oci-layout`, `index.json`, `blobs/sha256/<hex>`) used as smelt's
//! content-addressed cache, plus `diffs/sha256/<diff_id hex>`, each layer's
//! uncompressed tar, which the builder reads file contents from by offset.
//!
//! Every write goes to a temp file under `tmp/` in the store and is renamed
//! into place after its digest is verified, so a blob path that exists is
//! always complete and correct. `index.json` is updated under an exclusive
//! lock on `index.json.lock` (several smelt processes may share a store) and
//! also replaced by rename, so readers never need the lock.
//!
//! Index entries carry the full normalised reference (`registry/repo:tag`, or
//! `registry/repo@sha256:…` when untagged) in the [`REF_NAME`] annotation.
//!
//! Non-goals: garbage collection, other digest algorithms, foreign-layer
//! URLs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

use super::manifest::{
    self, Descriptor, Index, MAX_MANIFEST_SIZE, Manifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST,
    REF_NAME,
};
use crate::digest::{Digest, HashingWriter};
use crate::oci::Reference;

/// Errors from the local store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {expected}: digest mismatch, got {got}")]
    DigestMismatch { expected: Digest, got: Digest },
    #[error("blob {digest} is not in the store {root}")]
    MissingBlob { digest: Digest, root: PathBuf },
    #[error("blob {digest}: invalid {what}: {reason}")]
    Invalid {
        digest: Digest,
        what: &'static str,
        reason: String,
    },
    #[error("layer {digest}: uncompressed content is {got}, config's diff_id says {expected}")]
    DiffIdMismatch {
        digest: Digest,
        expected: Digest,
        got: Digest,
    },
    #[error("layer {digest}: unsupported media type {media_type:?}")]
    UnsupportedLayer { digest: Digest, media_type: String },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A local OCI image layout.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// One tagged entry of the store's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreEntry {
    /// Full reference as recorded in the [`REF_NAME`] annotation.
    pub reference: String,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// An image loaded from the store: its manifest, config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    pub layers: Vec<Layer>,
}

/// One layer of an [`Image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Digest of the blob as stored (usually compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    pub media_type: String,
    pub size: u64,
}

/// The key a reference is recorded under in `index.json`.
pub fn index_key(r: &Reference) -> String {
    match (&r.tag, &r.digest) {
        (Some(_), _) => r.without_digest().to_string(),
        (None, _) => r.to_string(),
    }
}

impl Store {
    /// Opens the store at `root`, creating the layout if missing.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in ["blobs/sha256", "diffs/sha256", "tmp"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        store.clean_stale_temps();
        let layout = root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            let _lock = store.lock_index()?;
            if !index.exists() {
                store.write_index(&Index::new())?;
            }
        }
        Ok(store)
    }

    /// Removes temp files a killed process left (older than a day, so a
    /// concurrent smelt's transfer in progress is never touched).
    fn clean_stale_temps(&self) {
        const STALE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE);
            if old {
                // Best effort: another process may have removed it already.
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// `$SMELT_STORE`, else `$XDG_CACHE_HOME/smelt`, else `$HOME/.cache/smelt`.
    pub fn default_root() -> PathBuf {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(p) = env("SMELT_STORE") {
            return p;
        }
        if let Some(p) = env("XDG_CACHE_HOME") {
            return p.join("smelt");
        }
        env("HOME")
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".cache/smelt")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix("part-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))
    }

    /// Streams `reader` into the store and returns its digest; when
    /// `expected` is given a mismatch is an error and nothing is stored.
    pub fn write_blob(&self, mut reader: impl Read, expected: Option<&Digest>) -> Result<Digest> {
        let tmp = self.temp_file()?;
        let tmp_path = tmp.path().to_path_buf();
        let mut w = HashingWriter::new(io::BufWriter::new(tmp));
        io::copy(&mut reader, &mut w).map_err(io_err(&tmp_path))?;
        let digest = w.digest();
        if let Some(e) = expected
            && *e != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: e.clone(),
                got: digest,
            });
        }
        let tmp = w
            .into_inner()
            .into_inner()
            .map_err(|e| io_err(&tmp_path)(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io_err(&tmp_path))?;
        let dest = self.blob_path(&digest);
        tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        Ok(digest)
    }

    /// Reads a whole blob into memory, refusing blobs over `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: digest.clone(),
                    root: self.root.clone(),
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut buf = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(&path))?;
        if buf.len() as u64 > limit {
            return Err(StoreError::Invalid {
                digest: digest.clone(),
                what: "document",
                reason: format!("larger than {limit} bytes"),
            });
        }
        Ok(buf)
    }

    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes).map_err(io_err(dest))?;
        tmp.as_file().sync_all().map_err(io_err(dest))?;
        tmp.persist(dest).map_err(|e| io_err(dest)(e.error))?;
        Ok(())
    }

    fn lock_index(&self) -> Result<File> {
        let path = self.root.join("index.json.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.lock().map_err(io_err(&path))?;
        Ok(f)
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| io_err(&path)(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let path = self.root.join("index.json");
        let bytes = serde_json::to_vec_pretty(index)
            .map_err(|e| io_err(&path)(io::Error::other(e.to_string())))?;
        self.write_atomic(&path, &bytes)
    }

    /// Records `reference` → `manifest` in `index.json`, replacing any
    /// earlier entry for the same reference.
    pub fn tag(&self, reference: &Reference, manifest: &Digest, media_type: &str) -> Result<()> {
        let size = fs::metadata(self.blob_path(manifest))
            .map_err(|_| StoreError::MissingBlob {
                digest: manifest.clone(),
                root: self.root.clone(),
            })?
            .len();
        let key = index_key(reference);
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME) != Some(&key));
        let mut desc = Descriptor::new(media_type, manifest.clone(), size);
        desc.annotations.insert(REF_NAME.to_string(), key);
        index.manifests.push(desc);
        index.manifests.sort_by(|a, b| {
            a.annotations
                .get(REF_NAME)
                .cmp(&b.annotations.get(REF_NAME))
        });
        self.write_index(&index)
    }

    /// The manifest digest `reference` names locally: its digest pin when
    /// that blob is present, else its `index.json` entry.
    pub fn lookup(&self, reference: &Reference) -> Result<Option<Digest>> {
        if let Some(d) = &reference.digest {
            return Ok(self.has_blob(d).then(|| d.clone()));
        }
        let key = index_key(reference);
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .find(|d| d.annotations.get(REF_NAME) == Some(&key))
            .map(|d| d.digest))
    }

    /// All tagged entries, sorted by reference.
    pub fn list(&self) -> Result<Vec<StoreEntry>> {
        let mut out: Vec<StoreEntry> = self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| {
                Some(StoreEntry {
                    reference: d.annotations.get(REF_NAME)?.clone(),
                    digest: d.digest,
                    size: d.size,
                    media_type: d.media_type,
                })
            })
            .collect();
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Loads the image a manifest (or index: its linux/amd64 entry) names.
    pub fn image(&self, digest: &Digest) -> Result<Image> {
        let bytes = self.read_blob(digest, MAX_MANIFEST_SIZE)?;
        let invalid = |what: &'static str, reason: String| StoreError::Invalid {
            digest: digest.clone(),
            what,
            reason,
        };
        let media_type = manifest::sniff_media_type(&bytes)
            .ok_or_else(|| invalid("manifest", "not a JSON manifest or index".into()))?;
        if manifest::is_index(&media_type) {
            let index: Index =
                serde_json::from_slice(&bytes).map_err(|e| invalid("index", e.to_string()))?;
            let entry = index.linux_amd64().ok_or_else(|| {
                invalid(
                    "index",
                    format!(
                        "no linux/amd64 entry (found {})",
                        index.platforms().join(", ")
                    ),
                )
            })?;
            return self.image(&entry.digest);
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| invalid("manifest", e.to_string()))?;
        let config_digest = manifest.config.digest.clone();
        let config_bytes = self.read_blob(&config_digest, MAX_MANIFEST_SIZE)?;
        let config = ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| {
            StoreError::Invalid {
                digest: config_digest.clone(),
                what: "image config",
                reason: e.to_string(),
            }
        })?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers.len() {
            return Err(invalid(
                "manifest",
                format!(
                    "{} layers but config {config_digest} lists {} diff_ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let diff_id = diff_id.parse().map_err(|e: crate::digest::DigestError| {
                invalid("manifest", format!("config {config_digest}: {e}"))
            })?;
            layers.push(Layer {
                digest: desc.digest.clone(),
                diff_id,
                media_type: desc.media_type.clone(),
                size: desc.size,
            });
        }
        Ok(Image {
            manifest_digest: digest.clone(),
            manifest_bytes: bytes,
            manifest,
            config_digest,
            config,
            layers,
        })
    }

    /// Path of the layer's uncompressed tar, decompressing it on first use
    /// and checking it against the config's diff_id.
    pub fn layer_tar(&self, layer: &Layer) -> Result<PathBuf> {
        let dest = self.root.join("diffs/sha256").join(layer.diff_id.hex());
        if dest.is_file() {
            return Ok(dest);
        }
        let src = self.blob_path(&layer.digest);
        let f = File::open(&src).map_err(|_| StoreError::MissingBlob {
            digest: layer.digest.clone(),
            root: self.root.clone(),
        })?;
        let f = BufReader::new(f);
        let mt = layer.media_type.as_str();
        let mut reader: Box<dyn Read> = if mt.ends_with("gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(f))
        } else if mt.ends_with("zstd") {
            Box::new(zstd::Decoder::with_buffer(f).map_err(io_err(&src))?)
        } else if mt.ends_with(".tar") || mt.ends_with(".tar.diff") {
            Box::new(f)
        } else {
            return Err(StoreError::UnsupportedLayer {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            });
        };
        let tmp = self.temp_file()?;
        let mut w = HashingWriter::new(io::BufWriter::new(tmp));
        io::copy(&mut reader, &mut w).map_err(io_err(&src))?;
        let got = w.digest();
        if got != layer.diff_id {
            return Err(StoreError::DiffIdMismatch {
                digest: layer.digest.clone(),
                expected: layer.diff_id.clone(),
                got,
            });
        }
        let tmp = w
            .into_inner()
            .into_inner()
            .map_err(|e| io_err(&dest)(e.into_error()))?;
        // Synced before the rename: an existing diff is trusted unverified.
        tmp.as_file().sync_all().map_err(io_err(&dest))?;
        tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        Ok(dest)
    }

    /// Stores a one-layer image: `layer_tar_gz` (gzip-compressed tar whose
    /// uncompressed digest is `diff_id`), `config` (its `rootfs` is replaced
    /// by that single diff_id), and an OCI manifest; tags it as `tag`.
    /// Config and manifest bytes are deterministic (sorted keys).
    pub fn import_image(
        &self,
        layer_tar_gz: &Path,
        diff_id: &Digest,
        mut config: ImageConfiguration,
        tag: &Reference,
    ) -> Result<Digest> {
        let f = File::open(layer_tar_gz).map_err(io_err(layer_tar_gz))?;
        let layer_size = f.metadata().map_err(io_err(layer_tar_gz))?.len();
        let layer_digest = self.write_blob(BufReader::new(f), None)?;
        *config.rootfs_mut().diff_ids_mut() = vec![diff_id.to_string()];
        let config_bytes = manifest::canonical_json(&config)
            .map_err(|e| io_err(layer_tar_gz)(io::Error::other(e.to_string())))?;
        let config_digest = self.write_blob(&config_bytes[..], None)?;
        let m = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            config: Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as u64),
            layers: vec![Descriptor::new(OCI_LAYER_GZIP, layer_digest, layer_size)],
            annotations: Default::default(),
        };
        let bytes = serde_json::to_vec(&m)
            .map_err(|e| io_err(layer_tar_gz)(io::Error::other(e.to_string())))?;
        let digest = self.write_blob(&bytes[..], None)?;
        self.tag(tag, &digest, OCI_MANIFEST)?;
        Ok(digest)
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
