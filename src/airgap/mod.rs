//! The `byok-airgap` commands, as library functions; `main` only parses
//! arguments and prints.

pub mod confirm;
pub mod custodian;
pub(crate) mod error;
pub mod inspect;
pub mod keys;
pub mod module;
pub mod probe;
pub mod prompt;
pub mod wrap;

pub use error::{Error, ForeignReason, SwapReason};

use std::path::Path;

use crate::kms::ImportParameters;

/// Read and validate an import-parameters file against this machine's clock;
/// returns the parameters and the file's bytes exactly as read.
pub fn read_params(path: &Path) -> Result<(ImportParameters, Vec<u8>), Error> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > crate::kms::import_params::MAX_FILE_LEN as u64 {
        return Err(crate::kms::ParamsError::TooLarge(meta.len() as usize).into());
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let params = ImportParameters::parse(&bytes, time::OffsetDateTime::now_utc())?;
    Ok((params, bytes))
}
