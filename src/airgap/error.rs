//! Errors of the `byok-airgap` commands.

use std::path::PathBuf;

use crate::bundle::OutputError;
use crate::hsm::HsmError;
use crate::kms::key_spec::CombinationError;
use crate::kms::{KeySpec, ParamsError, WrappingAlgorithm};

/// Why something in a ceremony's output directory is not this run's to touch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForeignReason {
    /// Where a plain file (the transcript, `SUMMARY.md`) belongs, something else is.
    #[error("it is a symlink or not a plain file")]
    NotAPlainFile,
    /// Where a bundle directory belongs, something else is.
    #[error("it is a symlink or not a directory")]
    NotADirectory,
    /// A bundle directory holds something that is not a bundle file.
    #[error("it holds {0:?}, which is not a bundle file")]
    NotABundleFile(String),
}

/// How the key found on the token differs from the one the transcript recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapReason {
    /// Another CKA_ID.
    #[error("its CKA_ID is {found}, but the transcript recorded {recorded}")]
    Id {
        /// On the token, hex.
        found: String,
        /// In the transcript, hex.
        recorded: String,
    },
    /// Another check value (KCV, HMAC check or public key).
    #[error("its check value is now {now}, but the transcript recorded {then}")]
    CheckValue {
        /// On the token, described.
        now: String,
        /// In the transcript, described.
        then: String,
    },
    /// The key generated after a recorded intent has another CKA_ID.
    #[error("the transcript recorded the intent to generate it with CKA_ID {intended}, but the token holds one with CKA_ID {found}")]
    Intent {
        /// The CKA_ID recorded, hex.
        intended: String,
        /// On the token, hex.
        found: String,
    },
    /// The recorded CKA_ID is not hex.
    #[error("the recorded CKA_ID {0:?} is not hex")]
    RecordedIdNotHex(String),
}

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
    /// The parameters digest typed or given is not the one of the files on the media.
    #[error("parameters digest mismatch: the import parameters on this media hash to {actual}, but {expected} was confirmed. Do not continue: a wrapping key or import token on the media is not the one the bastion fetched. Compare again with the digest `byok-bastion prepare --ceremony` printed; nothing was generated or wrapped")]
    ParametersDigestMismatch {
        /// What was confirmed.
        expected: String,
        /// Computed from the media.
        actual: String,
    },
    /// The parameters digest was not confirmed.
    #[error("the wrapping keys must be confirmed from outside the media before a ceremony runs: type the parameters digest that `byok-bastion prepare --ceremony` printed when asked, or pass --expect-parameters-digest HEX (--non-interactive alone is not enough); nothing was generated or wrapped")]
    ParametersNotConfirmed,
    /// `ceremony run` without `--non-interactive` needs a terminal to confirm on.
    #[error("no terminal to confirm on; pass --non-interactive with --expect-parameters-digest HEX (both are recorded in the transcript)")]
    NoTerminalToRun,
    /// `ceremony sign` without `--yes` needs a terminal to confirm on.
    #[error("no terminal to confirm on; pass --yes to sign non-interactively (it is recorded in the attestation)")]
    NoTerminalToSign,
    /// The local module could not be determined.
    #[error(transparent)]
    ModuleConfig(#[from] super::module::ModuleConfigError),
    /// The ceremony file expects another module.
    #[error(transparent)]
    ModuleMismatch(#[from] super::module::ModuleMismatch),
    /// The token is not the one the ceremony file expects.
    #[error("the token reports {field} {actual:?} but the ceremony file expects {expected:?}; nothing was logged in to. Check that the right HSM is connected, or correct the ceremony file's hsm.token")]
    TokenMismatch {
        /// Which fact.
        field: &'static str,
        /// What the token reports.
        actual: String,
        /// What the file expects.
        expected: String,
    },
    /// The ceremony file was refused.
    #[error("{0}; nothing was done: no HSM session was opened")]
    Plan(#[from] crate::ceremony::file::PlanError),
    /// Something found in the output directory was not written by this tool.
    #[error("{path} was not written by this ceremony ({why}); it was left untouched. Inspect it, remove it by hand if it is not needed, and run again")]
    Foreign {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: ForeignReason,
    },
    /// A key on the token is not the one the transcript recorded.
    #[error("key {label:?}: {reason}. The key on the token is not the one this ceremony generated; stop and investigate (was the token changed between the runs?)")]
    KeySwapped {
        /// Key label.
        label: String,
        /// What differs.
        reason: SwapReason,
    },
    /// The transcript in the output directory cannot be continued: an
    /// entry's label or target name is not a path-safe name.
    #[error("the transcript in {path} cannot be continued: entry {entry} has no valid {field}")]
    Resume {
        /// The output directory.
        path: PathBuf,
        /// The entry's `seq`.
        entry: u64,
        /// `label` or `target`.
        field: &'static str,
    },
    /// The label is unusable.
    #[error("label {0:?} is not usable: use 1 to 64 characters of letters, digits, '-', '_', '.', ':' or '/'")]
    Label(String),
}
