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

/// Progress reporting for transfers, so the CLI can draw bars; the library
/// never prints.
pub trait Progress {
    /// A transfer of `what` (e.g. a blob digest) begins; `total` bytes if known.
    fn start(&self, what: &str, total: Option<u64>);
    /// `bytes` more bytes were transferred.
    fn advance(&self, bytes: u64);
    /// The current transfer ended.
    fn finish(&self);
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _what: &str, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
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
