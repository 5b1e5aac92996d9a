//! smelt: turn container images into immutable, bootable operating systems.
//!
//! The data flow (see docs/ARCHITECTURE.md): spec → resolve/pull images →
//! apply layers into an in-memory tree → assemble the root → write artifacts.

pub mod artifacts;
pub mod assemble;
pub mod digest;
pub mod oci;
pub mod run;
pub mod spec;
