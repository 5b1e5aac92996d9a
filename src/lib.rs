//! smelt: turn container images into immutable, bootable operating systems.
//!
//! The data flow (see docs/ARCHITECTURE.md): spec → resolve/pull images →
//! apply layers into an in-memory tree → assemble the root → write artifacts.

pub mod artifacts;
pub mod assemble;
pub mod build;
pub mod compress;
pub mod digest;
pub mod formats;
pub mod image;
pub mod kernel;
pub mod lock;
pub mod oci;
pub mod progress;
pub mod run;
pub mod slots;
pub mod spec;
pub mod tree;
