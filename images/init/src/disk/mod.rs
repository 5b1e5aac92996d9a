//! Reading disks: file systems the init reads itself.
pub mod fat;
