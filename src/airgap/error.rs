//! Errors of the `byok-airgap` commands.

use std::path::PathBuf;

use crate::bundle::OutputError;
use crate::hsm::HsmError;
use crate::kms::key_spec::CombinationError;
use crate::kms::{KeySpec, ParamsError, WrappingAlgorithm};

/// A `byok-airgap` command failed; the message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The import parameters were refused.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// KMS would refuse this key spec with this algorithm.
    #[error(transparent)]
    Combination(#[from] CombinationError),
    /// The HSM refused or failed.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// The output could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A ceremony directory or attestation did not verify.
    #[error(transparent)]
    Verify(#[from] crate::ceremony::VerifyError),
    /// The custodian policy was refused.
    #[error(transparent)]
    Policy(#[from] crate::ceremony::policy::PolicyError),
    /// The custodian did not confirm.
    #[error("the custodian did not confirm; nothing was signed")]
    NotConfirmed,
    /// No wrapping algorithm given.
    #[error("the import-parameters file does not say which wrapping algorithm was requested (KMS does not echo it); pass --wrapping-algorithm with the one given to get-parameters-for-import")]
    AlgorithmMissing,
    /// The given algorithm differs from the file's.
    #[error("--wrapping-algorithm {given} differs from {in_file} recorded in the import-parameters file; KMS will only accept {in_file} with this import token")]
    AlgorithmMismatch {
        /// From the command line.
        given: WrappingAlgorithm,
        /// From the file.
        in_file: WrappingAlgorithm,
    },
    /// The given key spec differs from the file's.
    #[error("--key-spec {given} differs from the KMS key's spec {in_file} recorded in the import-parameters file")]
    KeySpecMismatch {
        /// From the command line.
        given: KeySpec,
        /// From the file.
        in_file: KeySpec,
    },
    /// The fingerprint the custodian confirmed is not the wrapping key's.
    #[error("wrapping key fingerprint mismatch: the parameters file has {actual} but {expected} was confirmed. Do not continue: the file may have been substituted. Compare again with the fingerprint the bastion printed; nothing was written")]
    FingerprintMismatch {
        /// What the custodian confirmed.
        expected: String,
        /// The file's.
        actual: String,
    },
    /// The expected fingerprint is not 64 hex characters.
    #[error(
        "{0:?} is not a SHA-256 fingerprint (64 hex characters; spaces and colons are ignored)"
    )]
    FingerprintFormat(String),
    /// Nobody confirmed the fingerprint.
    #[error("the wrapping key fingerprint must be confirmed before wrapping: run interactively and type it back, or pass --expect-wrapping-key-sha256 HEX with the value the bastion printed")]
    FingerprintNotConfirmed,
    /// The label is unusable.
    #[error("label {0:?} is not usable: use 1 to 64 characters of letters, digits, '-', '_', '.', ':' or '/'")]
    Label(String),
}
