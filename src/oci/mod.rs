//! OCI images: references, the local content-addressed store, the registry
//! client, pulling/pushing and resolving references against store and
//! registry.
//!
//! Scope: single-platform (linux/amd64) images, sha256 digests, OCI and
//! Docker schema 2 manifests. Non-goals: signing/verification of images
//! (cosign), referrers, garbage collection of the store.

pub mod auth;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod resolve;
pub mod store;
#[doc(hidden)]
pub mod testregistry;

pub use reference::Reference;
pub use registry::{Pulled, RegistryClient, RegistryError, RegistryOptions, push};
pub use resolve::{PullPolicy, Resolver};
pub use store::{Image, Layer, Store, StoreEntry, StoreError};

pub use crate::progress::{NoProgress, Progress};

use anyhow::Context;

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

/// A reader that reports every read to a [`Progress`].
pub(crate) struct ProgressReader<'a, R> {
    pub inner: R,
    pub progress: &'a dyn Progress,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
