//! OCI images: references, the local content-addressed store, registries.

pub mod reference;

pub use reference::Reference;
