//! What the air-gapped side writes for removable media.

pub(crate) mod manifest;
pub mod output;

pub use manifest::Manifest;
pub use output::{AtomicDir, OutputError};
