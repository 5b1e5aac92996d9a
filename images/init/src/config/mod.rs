//! NoCloud configuration (placeholder until the config room lands).
pub mod sources;

use std::collections::BTreeMap;

/// A NoCloud seed and where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seed {
    pub source: String,
    pub meta_data: Vec<u8>,
    pub user_data: Vec<u8>,
    pub network_config: Option<Vec<u8>>,
    /// Every other file of the source, by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
}
