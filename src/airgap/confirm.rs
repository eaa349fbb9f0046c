//! The wrapping key's fingerprint must be confirmed by a person (or by an
//! explicit expected value) before anything is wrapped under it. A
//! [`ConfirmedWrappingKey`] can only be made by a successful comparison, and
//! [`super::wrap::run`] requires one.

use super::Error;
use crate::ceremony::file::CheckedCeremony;
use crate::fingerprint::{normalize, Fingerprint};
use crate::kms::ImportParameters;

/// How the fingerprint was confirmed, recorded in outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Proof that a ceremony's parameters digest (every wrapping key and import
/// token, `ceremony::params_digest`) was confirmed against a value
/// from the bastion. `ceremony run` requires one; it hands out the
/// per-target [`ConfirmedWrappingKey`]s.
#[derive(Clone, Debug)]
pub struct ConfirmedParameters {
    digest: Fingerprint,
    by: ConfirmedBy,
}

impl ConfirmedParameters {
    /// The confirmed digest.
    pub fn digest(&self) -> Fingerprint {
        self.digest
    }

    /// How it was confirmed.
    pub fn by(&self) -> ConfirmedBy {
        self.by
    }

    /// The confirmation of one target's wrapping key: only for a ceremony
    /// whose digest is the confirmed one, and only for one of its targets.
    pub(crate) fn wrapping_key(
        &self,
        c: &CheckedCeremony,
        params: &ImportParameters,
    ) -> Result<ConfirmedWrappingKey, Error> {
        let fingerprint = Fingerprint(params.wrapping_key_sha256());
        let listed = c
            .digest_lines
            .iter()
            .any(|l| l.wrapping_key_sha256 == fingerprint.hex());
        if c.parameters_digest != self.digest || !listed {
            return Err(Error::ParametersNotConfirmed);
        }
        Ok(ConfirmedWrappingKey {
            fingerprint,
            by: self.by,
        })
    }
}

/// Confirm a ceremony's parameters digest against `--expect-parameters-digest`.
pub fn parameters_with_expected(
    c: &CheckedCeremony,
    expected: &str,
) -> Result<ConfirmedParameters, Error> {
    confirm_parameters(c, expected, ConfirmedBy::ExpectedValue)
}

/// Confirm a ceremony's parameters digest against what a custodian typed.
pub fn parameters_with_typed(
    c: &CheckedCeremony,
    typed: &str,
) -> Result<ConfirmedParameters, Error> {
    confirm_parameters(c, typed, ConfirmedBy::TypedBack)
}

fn confirm_parameters(
    c: &CheckedCeremony,
    given: &str,
    by: ConfirmedBy,
) -> Result<ConfirmedParameters, Error> {
    let Some(expected) = normalize(given) else {
        return Err(Error::FingerprintFormat(given.trim().to_string()));
    };
    let actual = c.parameters_digest;
    if expected != actual.hex() {
        return Err(Error::ParametersDigestMismatch {
            expected,
            actual: actual.hex(),
        });
    }
    Ok(ConfirmedParameters { digest: actual, by })
}
