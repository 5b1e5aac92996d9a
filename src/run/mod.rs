//! Booting artifacts under QEMU for local testing (`smelt run`, boot tests).

pub mod qemu;
