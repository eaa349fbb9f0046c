//! The wrapping key's fingerprint must be confirmed by a person (or by an
//! explicit expected value) before anything is wrapped under it. A
//! [`ConfirmedWrappingKey`] can only be made by a successful comparison, and
//! [`super::wrap::run`] requires one.

use super::Error;
use crate::fingerprint::{normalize, Fingerprint};
use crate::kms::ImportParameters;

/// How the fingerprint was confirmed, recorded in outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmedBy {
    /// A custodian typed it back.
    TypedBack,
    /// Given with `--expect-wrapping-key-sha256`.
    ExpectedValue,
}

/// Proof that the wrapping key's fingerprint was confirmed.
#[derive(Clone, Debug)]
pub struct ConfirmedWrappingKey {
    fingerprint: Fingerprint,
    /// How.
    pub by: ConfirmedBy,
}

impl ConfirmedWrappingKey {
    /// The confirmed fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether this confirmation is for `params`' wrapping key.
    pub fn covers(&self, params: &ImportParameters) -> bool {
        self.fingerprint.0 == params.wrapping_key_sha256()
    }
}

/// Confirm against a value given on the command line.
pub fn with_expected(
    params: &ImportParameters,
    expected: &str,
) -> Result<ConfirmedWrappingKey, Error> {
    confirm(params, expected, ConfirmedBy::ExpectedValue)
}

/// Confirm against what a custodian typed.
pub fn with_typed(params: &ImportParameters, typed: &str) -> Result<ConfirmedWrappingKey, Error> {
    confirm(params, typed, ConfirmedBy::TypedBack)
}

fn confirm(
    params: &ImportParameters,
    given: &str,
    by: ConfirmedBy,
) -> Result<ConfirmedWrappingKey, Error> {
    let actual = Fingerprint(params.wrapping_key_sha256());
    let Some(expected) = normalize(given) else {
        return Err(Error::FingerprintFormat(given.trim().to_string()));
    };
    if expected != actual.hex() {
        return Err(Error::FingerprintMismatch {
            expected,
            actual: actual.hex(),
        });
    }
    Ok(ConfirmedWrappingKey {
        fingerprint: actual,
        by,
    })
}
