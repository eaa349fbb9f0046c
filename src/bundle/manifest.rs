//! `manifest.json`: what was wrapped, how, and the values that let the
//! bastion and auditors check KMS now holds the HSM's key. See docs/formats.md.

use serde::{Deserialize, Serialize};

use crate::hsm::key_checks::KeyChecks;
use crate::hsm::keygen::KeyProtection;
use crate::hsm::TokenFacts;
use crate::kms::{KeySpec, WrappingAlgorithm};

/// The format tag of this manifest version.
pub const FORMAT: &str = "byok-ceremony/wrap-manifest/v1";
/// File name of the wrapped key material.
pub const ENCRYPTED_KEY_MATERIAL: &str = "EncryptedKeyMaterial.bin";
/// File name of the import token.
pub const IMPORT_TOKEN: &str = "ImportToken.bin";
/// File name of the copy of the import parameters that were used.
pub(crate) const IMPORT_PARAMETERS: &str = "ImportParameters.json";
/// File name of the manifest.
pub const MANIFEST: &str = "manifest.json";

/// The HSM key that was exported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HsmKeyRecord {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, lowercase hex.
    pub id_hex: String,
    /// Whether this run generated it (false with `--existing`).
    pub generated: bool,
    /// `CKA_WRAP_WITH_TRUSTED`: the key can only be wrapped under a key the
    /// security officer marked trusted.
    #[serde(default)]
    pub wrap_with_trusted: bool,
    /// The protection attributes the token reports for it.
    pub protection: Option<KeyProtectionRecord>,
}

/// Protection attributes, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyProtectionRecord {
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_MODIFIABLE` as the token reports it (absent in older manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modifiable: Option<bool>,
    /// `CKA_COPYABLE` as the token reports it (absent in older manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copyable: Option<bool>,
}

impl From<KeyProtection> for KeyProtectionRecord {
    fn from(p: KeyProtection) -> Self {
        KeyProtectionRecord {
            sensitive: p.sensitive,
            extractable: p.extractable,
            always_sensitive: p.always_sensitive,
            never_extractable: p.never_extractable,
            modifiable: Some(p.modifiable),
            copyable: Some(p.copyable),
        }
    }
}

/// The token the key lives on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// Token label.
    pub label: String,
    /// Token serial number.
    pub serial: String,
    /// Token model.
    pub model: String,
    /// Token manufacturer.
    pub manufacturer: String,
    /// Firmware version.
    pub firmware: String,
    /// PKCS#11 module description and version.
    pub library: String,
}

impl From<&TokenFacts> for TokenRecord {
    fn from(t: &TokenFacts) -> Self {
        TokenRecord {
            label: t.label.clone(),
            serial: t.serial.clone(),
            model: t.model.clone(),
            manufacturer: t.manufacturer.clone(),
            firmware: t.firmware.clone(),
            library: t.library.clone(),
        }
    }
}

/// The manifest written next to the wrapped key material.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `byok-ceremony/wrap-manifest/v1` (`FORMAT`).
    pub format: String,
    /// byok-ceremony version that wrote it.
    pub tool_version: String,
    /// UTC time of writing, RFC 3339.
    pub created_at: String,
    /// KMS key ID or ARN, from the import parameters.
    pub key_id: String,
    /// KMS Region, when the parameters said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// KMS key spec of the material.
    pub key_spec: KeySpec,
    /// KMS wrapping algorithm used.
    pub wrapping_algorithm: WrappingAlgorithm,
    /// `RSA_2048`, `RSA_3072` or `RSA_4096`.
    pub wrapping_key_spec: String,
    /// SHA-256 of the wrapping public key's DER, lowercase hex.
    pub wrapping_key_sha256: String,
    /// SHA-256 of the import token, lowercase hex.
    pub import_token_sha256: String,
    /// SHA-256 of the import-parameters file as read.
    pub import_parameters_sha256: String,
    /// When the import parameters expire, RFC 3339.
    pub parameters_valid_to: String,
    /// SHA-256 of `EncryptedKeyMaterial.bin`, lowercase hex.
    pub encrypted_key_material_sha256: String,
    /// Length of `EncryptedKeyMaterial.bin` in bytes.
    pub encrypted_key_material_len: usize,
    /// The HSM key.
    pub hsm_key: HsmKeyRecord,
    /// The token.
    pub token: TokenRecord,
    /// The PKCS#11 mechanisms used, in words.
    pub wrap_method: String,
    /// What the self-test compared before the real wrap.
    pub self_test: Vec<String>,
    /// AES key check value (AES keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kcv: Option<String>,
    /// HMAC check (HMAC keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_check: Option<crate::hsm::key_checks::HmacCheck>,
    /// Base64 DER SubjectPublicKeyInfo (asymmetric keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// Why a `manifest.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestReadError {
    /// Unreadable, not a regular file, or larger than `media::MAX_MANIFEST`.
    #[error(transparent)]
    Media(#[from] crate::media::MediaReadError),
    /// Not a manifest of this format.
    #[error(
        "{path} is not a byok-ceremony manifest ({source}); unknown and missing fields are refused"
    )]
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },
}

impl Manifest {
    /// Read `path` (at most `media::MAX_MANIFEST` bytes, checked
    /// before reading) and parse it strictly. Returns the bytes as read too,
    /// for hashing against the transcript.
    pub fn read(path: &std::path::Path) -> Result<(Self, Vec<u8>), ManifestReadError> {
        let bytes = crate::media::read_bounded(path, "manifest", crate::media::MAX_MANIFEST)?;
        let m = serde_json::from_slice(&bytes).map_err(|source| ManifestReadError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Ok((m, bytes))
    }

    /// Copy the check values in.
    pub fn set_checks(&mut self, checks: KeyChecks) {
        self.kcv = checks.kcv;
        self.hmac_check = checks.hmac_check;
        self.public_key = checks.public_key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_is_bounded_and_strict() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(MANIFEST);
        std::fs::File::create(&p)
            .unwrap()
            .set_len(crate::media::MAX_MANIFEST + 1)
            .unwrap();
        let e = Manifest::read(&p).unwrap_err();
        assert!(
            matches!(
                e,
                ManifestReadError::Media(crate::media::MediaReadError::TooLarge { .. })
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("more than any genuine manifest"),
            "{e}"
        );
        std::fs::write(&p, br#"{"format":"byok-ceremony/wrap-manifest/v1"}"#).unwrap();
        assert!(matches!(
            Manifest::read(&p),
            Err(ManifestReadError::Json { .. })
        ));
    }
}
