//! What we know about AWS KMS import: key specs, wrapping algorithms, their
//! rules, and the import-parameters file that crosses the air gap.

pub(crate) mod import_params;
pub(crate) mod key_spec;

pub use import_params::{rfc3339, ImportParameters, ParamsError};
pub use key_spec::{check_combination, KeyFamily, KeySpec, WrappingAlgorithm};
