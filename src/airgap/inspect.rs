//! `byok-airgap inspect`: what an import-parameters file holds.

use serde::Serialize;

use crate::fingerprint::Fingerprint;
use crate::kms::import_params::rfc3339;
use crate::kms::ImportParameters;

/// A summary of import parameters for people and for `--json`.
#[derive(Debug, Serialize)]
pub struct ParamsSummary {
    /// Key ID or ARN.
    pub key_id: String,
    /// `RSA_2048` etc.
    pub wrapping_key_spec: String,
    /// SHA-256 of the wrapping public key, hex.
    pub wrapping_key_sha256: String,
    /// The same, grouped for reading aloud.
    pub wrapping_key_sha256_grouped: String,
    /// Import token size in bytes.
    pub import_token_len: usize,
    /// SHA-256 of the import token.
    pub import_token_sha256: String,
    /// Expiry, RFC 3339.
    pub valid_to: String,
    /// Minutes left.
    pub minutes_left: i64,
    /// Key spec, when recorded.
    pub key_spec: Option<String>,
    /// Wrapping algorithm, when recorded.
    pub wrapping_algorithm: Option<String>,
}

/// Summarize `params`.
pub fn summarize(params: &ImportParameters) -> ParamsSummary {
    let fp = Fingerprint(params.wrapping_key_sha256());
    ParamsSummary {
        key_id: params.key_id.clone(),
        wrapping_key_spec: format!("RSA_{}", params.wrapping_key_bits),
        wrapping_key_sha256: fp.hex(),
        wrapping_key_sha256_grouped: fp.grouped(),
        import_token_len: params.import_token.len(),
        import_token_sha256: hex::encode(params.import_token_sha256()),
        valid_to: rfc3339(params.valid_to),
        minutes_left: params
            .remaining(time::OffsetDateTime::now_utc())
            .whole_minutes(),
        key_spec: params.key_spec.map(|k| k.to_string()),
        wrapping_algorithm: params.wrapping_algorithm.map(|a| a.to_string()),
    }
}
