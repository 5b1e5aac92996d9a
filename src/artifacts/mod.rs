//! Artifacts composed from formats: kernel+initrd, tar; written atomically.

pub mod output;
