//! Artifacts composed from formats: kernel+initrd, tar; the manifest; and
//! the atomic output set every artifact is written through.

pub mod boot;
pub mod initrd;
pub mod manifest;
pub mod output;
pub mod raw;
pub mod stage1;
pub mod tarball;
