//! The import-parameters file: what `aws kms get-parameters-for-import`
//! prints, carried across the air gap on removable media.
//!
//! Everything in it is untrusted. [`ImportParameters::parse`] checks sizes,
//! encodings, the wrapping key's type and size, and the validity window
//! before anything else looks at it.

use base64::Engine as _;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::key_spec::{KeySpec, WrappingAlgorithm};

/// Largest import-parameters file we read (a real one is about 2 KiB).
pub const MAX_FILE_LEN: usize = 64 * 1024;
/// KMS's limit on the import token.
pub const MAX_IMPORT_TOKEN_LEN: usize = 6144;
/// KMS issues import parameters valid for 24 hours; we allow this much clock skew.
pub const CLOCK_SKEW: Duration = Duration::minutes(10);

/// Why an import-parameters file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// Too large to be import parameters.
    #[error("the import-parameters file is {0} bytes, larger than the {MAX_FILE_LEN}-byte limit; is this the JSON printed by `aws kms get-parameters-for-import`?")]
    TooLarge(usize),
    /// Not the JSON we expect.
    #[error("the import-parameters file is not valid import-parameters JSON ({0}); expected the output of `aws kms get-parameters-for-import` with KeyId, ImportToken, PublicKey and ParametersValidTo")]
    Json(#[from] serde_json::Error),
    /// A base64 field did not decode.
    #[error("{field} is not valid base64 ({source}); the file may be truncated or edited: fetch the import parameters again")]
    Base64 {
        /// The JSON field.
        field: &'static str,
        /// The decoding error.
        source: base64::DecodeError,
    },
    /// The key ID is empty or malformed.
    #[error("KeyId {0:?} is not a KMS key ID or key ARN")]
    KeyId(String),
    /// The import token is empty or too large.
    #[error("ImportToken is {0} bytes; KMS import tokens are 1 to {MAX_IMPORT_TOKEN_LEN} bytes")]
    TokenSize(usize),
    /// PublicKey is not an RSA SubjectPublicKeyInfo.
    #[error("PublicKey is not a DER-encoded RSA SubjectPublicKeyInfo ({0}); KMS wrapping keys are RSA_2048, RSA_3072 or RSA_4096")]
    PublicKey(String),
    /// The wrapping key has a size KMS does not use.
    #[error("the wrapping public key is RSA-{0}; KMS wrapping keys are RSA_2048, RSA_3072 or RSA_4096, so these parameters did not come from KMS")]
    KeySize(usize),
    /// The wrapping key has an exponent KMS does not use.
    #[error("the wrapping public key has exponent {0}; KMS wrapping keys use 65537, so these parameters did not come from KMS")]
    Exponent(String),
    /// ParametersValidTo did not parse.
    #[error("ParametersValidTo {0:?} is not an RFC 3339 time or a Unix timestamp")]
    ValidTo(String),
    /// The parameters have expired.
    #[error("these import parameters expired at {valid_to} (now {now}); run get-parameters-for-import again on the bastion and bring the new file")]
    Expired {
        /// When they expired.
        valid_to: String,
        /// This machine's time.
        now: String,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTime {
    Text(String),
    Epoch(f64),
}

/// The JSON as printed by the AWS CLI, with the optional fields our bastion adds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParams {
    #[serde(rename = "KeyId")]
    key_id: String,
    #[serde(rename = "ImportToken")]
    import_token: String,
    #[serde(rename = "PublicKey")]
    public_key: String,
    #[serde(rename = "ParametersValidTo")]
    valid_to: RawTime,
    #[serde(rename = "KeySpec", default)]
    key_spec: Option<KeySpec>,
    #[serde(rename = "WrappingAlgorithm", default)]
    wrapping_algorithm: Option<WrappingAlgorithm>,
    #[serde(rename = "WrappingKeySpec", default)]
    wrapping_key_spec: Option<String>,
    #[serde(rename = "Region", default)]
    region: Option<String>,
}

/// Validated import parameters.
#[derive(Clone, Debug)]
pub struct ImportParameters {
    /// Key ID or ARN as KMS returned it.
    pub key_id: String,
    /// The opaque import token, passed back to KMS unchanged.
    pub import_token: Vec<u8>,
    /// The wrapping public key, DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// The parsed wrapping public key.
    pub public_key: RsaPublicKey,
    /// Modulus length in bits (2048, 3072 or 4096).
    pub wrapping_key_bits: usize,
    /// End of the validity window.
    pub valid_to: OffsetDateTime,
    /// Key spec, when the file came from our bastion.
    pub key_spec: Option<KeySpec>,
    /// Wrapping algorithm, when the file came from our bastion.
    pub wrapping_algorithm: Option<WrappingAlgorithm>,
    /// Region, when the file came from our bastion.
    pub region: Option<String>,
    /// SHA-256 of the file exactly as read.
    pub file_sha256: [u8; 32],
}

fn b64(field: &'static str, text: &str) -> Result<Vec<u8>, ParamsError> {
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|source| ParamsError::Base64 { field, source })
}

fn valid_key_id(id: &str) -> bool {
    let ok_chars = |s: &str| {
        !s.is_empty()
            && s.len() <= 2048
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || ":/-_.".contains(c))
    };
    if let Some(rest) = id.strip_prefix("arn:") {
        ok_chars(rest) && rest.contains(":kms:") && rest.contains(":key/")
    } else {
        ok_chars(id) && !id.contains(':')
    }
}

/// Format a time as RFC 3339 for messages.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

impl ImportParameters {
    /// Parse and validate an import-parameters file, judging expiry against `now`.
    pub fn parse(bytes: &[u8], now: OffsetDateTime) -> Result<Self, ParamsError> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(ParamsError::TooLarge(bytes.len()));
        }
        let raw: RawParams = serde_json::from_slice(bytes)?;
        if !valid_key_id(&raw.key_id) {
            return Err(ParamsError::KeyId(raw.key_id));
        }
        let import_token = b64("ImportToken", &raw.import_token)?;
        if import_token.is_empty() || import_token.len() > MAX_IMPORT_TOKEN_LEN {
            return Err(ParamsError::TokenSize(import_token.len()));
        }
        let public_key_der = b64("PublicKey", &raw.public_key)?;
        let public_key = RsaPublicKey::from_public_key_der(&public_key_der)
            .map_err(|e| ParamsError::PublicKey(e.to_string()))?;
        let wrapping_key_bits = public_key.n().bits();
        if ![2048, 3072, 4096].contains(&wrapping_key_bits) {
            return Err(ParamsError::KeySize(wrapping_key_bits));
        }
        if public_key.e() != &rsa::BigUint::from(65537u32) {
            return Err(ParamsError::Exponent(public_key.e().to_string()));
        }
        if let Some(spec) = &raw.wrapping_key_spec {
            if spec != &format!("RSA_{wrapping_key_bits}") {
                return Err(ParamsError::PublicKey(format!(
                    "the file says WrappingKeySpec {spec} but the key is RSA-{wrapping_key_bits}"
                )));
            }
        }
        let valid_to = match raw.valid_to {
            RawTime::Text(t) => {
                OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| ParamsError::ValidTo(t))?
            }
            RawTime::Epoch(secs) if secs.is_finite() => {
                OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128)
                    .map_err(|_| ParamsError::ValidTo(secs.to_string()))?
            }
            RawTime::Epoch(secs) => return Err(ParamsError::ValidTo(secs.to_string())),
        };
        if valid_to <= now {
            return Err(ParamsError::Expired {
                valid_to: rfc3339(valid_to),
                now: rfc3339(now),
            });
        }
        Ok(ImportParameters {
            key_id: raw.key_id,
            import_token,
            public_key_der,
            public_key,
            wrapping_key_bits,
            valid_to,
            key_spec: raw.key_spec,
            wrapping_algorithm: raw.wrapping_algorithm,
            region: raw.region,
            file_sha256: Sha256::digest(bytes).into(),
        })
    }

    /// SHA-256 of the wrapping public key's DER: the fingerprint custodians compare.
    pub fn wrapping_key_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.public_key_der).into()
    }

    /// SHA-256 of the import token.
    pub fn import_token_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.import_token).into()
    }

    /// A warning when the validity window is longer than the 24 hours real KMS
    /// issues: either this machine's clock is behind, or the parameters come
    /// from an emulator (LocalStack issues 100 days).
    pub fn validity_warning(&self, now: OffsetDateTime) -> Option<String> {
        (self.valid_to > now + Duration::hours(24) + CLOCK_SKEW).then(|| {
            format!(
                "these import parameters are valid until {}, more than the 24 hours AWS KMS issues; check this machine's clock ({} now) if they came from AWS",
                rfc3339(self.valid_to),
                rfc3339(now)
            )
        })
    }

    /// Time left before the parameters expire.
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        self.valid_to - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::EncodePublicKey;

    fn key(bits: usize) -> Vec<u8> {
        let pem = match bits {
            2048 => include_str!("../hsm/selftest_keys/rsa2048.pem"),
            _ => unreachable!(),
        };
        use rsa::pkcs8::DecodePrivateKey;
        let k = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
        k.to_public_key().to_public_key_der().unwrap().into_vec()
    }

    fn json(pk: &[u8], token: &[u8], valid_to: &str) -> Vec<u8> {
        let e = base64::engine::general_purpose::STANDARD;
        format!(
            r#"{{"KeyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","ImportToken":"{}","PublicKey":"{}","ParametersValidTo":"{}"}}"#,
            e.encode(token),
            e.encode(pk),
            valid_to
        )
        .into_bytes()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-11-22T12:00:00Z", &Rfc3339).unwrap()
    }

    #[test]
    fn accepts_cli_output() {
        let p = ImportParameters::parse(
            &json(&key(2048), &[7; 1500], "2026-11-23T11:59:00.123000+00:00"),
            now(),
        )
        .unwrap();
        assert_eq!(p.wrapping_key_bits, 2048);
        assert_eq!(p.import_token.len(), 1500);
        assert!(p.remaining(now()) > Duration::hours(23));
    }

    #[test]
    fn refuses_expired_and_warns_on_long_validity() {
        let e = ImportParameters::parse(&json(&key(2048), &[7; 10], "2026-11-22T11:00:00Z"), now())
            .unwrap_err();
        assert!(matches!(e, ParamsError::Expired { .. }), "{e}");
        let far =
            ImportParameters::parse(&json(&key(2048), &[7; 10], "2026-11-25T11:00:00Z"), now())
                .unwrap();
        assert!(far.validity_warning(now()).unwrap().contains("clock"));
        let near =
            ImportParameters::parse(&json(&key(2048), &[7; 10], "2026-11-23T11:00:00Z"), now())
                .unwrap();
        assert!(near.validity_warning(now()).is_none());
    }

    #[test]
    fn refuses_bad_fields() {
        let pk = key(2048);
        let good = json(&pk, &[1; 10], "2026-11-23T11:00:00Z");
        let s = String::from_utf8(good.clone()).unwrap();
        // Truncated.
        assert!(matches!(
            ImportParameters::parse(&good[..good.len() / 2], now()),
            Err(ParamsError::Json(_))
        ));
        // Unknown field.
        let extra = s.replacen('{', r#"{"Extra":1,"#, 1);
        assert!(matches!(
            ImportParameters::parse(extra.as_bytes(), now()),
            Err(ParamsError::Json(_))
        ));
        // Duplicate field.
        let dup = s.replacen('{', r#"{"KeyId":"abc","#, 1);
        assert!(matches!(
            ImportParameters::parse(dup.as_bytes(), now()),
            Err(ParamsError::Json(_))
        ));
        // Not base64.
        let bad = json(&pk, &[1; 10], "2026-11-23T11:00:00Z");
        let bad = String::from_utf8(bad)
            .unwrap()
            .replace("\"ImportToken\":\"", "\"ImportToken\":\"!!");
        assert!(matches!(
            ImportParameters::parse(bad.as_bytes(), now()),
            Err(ParamsError::Base64 {
                field: "ImportToken",
                ..
            })
        ));
        // Token too large.
        assert!(matches!(
            ImportParameters::parse(&json(&pk, &[1; 6145], "2026-11-23T11:00:00Z"), now()),
            Err(ParamsError::TokenSize(6145))
        ));
        // Truncated public key.
        assert!(matches!(
            ImportParameters::parse(&json(&pk[..100], &[1; 10], "2026-11-23T11:00:00Z"), now()),
            Err(ParamsError::PublicKey(_))
        ));
    }

    #[test]
    fn refuses_small_wrapping_key() {
        let mut rng = rand_core_os();
        let k = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let der = k.to_public_key().to_public_key_der().unwrap();
        let e = ImportParameters::parse(
            &json(der.as_bytes(), &[1; 10], "2026-11-23T11:00:00Z"),
            now(),
        )
        .unwrap_err();
        assert!(matches!(e, ParamsError::KeySize(1024)), "{e}");
        assert!(e.to_string().contains("RSA_2048"));
    }

    /// Hostile input never panics: truncations and bit flips of a valid file
    /// are refused, or parse to something that still meets every rule.
    #[test]
    fn mutated_files_never_panic() {
        let good = json(&key(2048), &[9; 300], "2026-11-23T11:00:00Z");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for cut in 0..good.len() {
            assert!(ImportParameters::parse(&good[..cut], now()).is_err());
        }
        for _ in 0..3000 {
            let mut m = good.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % m.len() as u64) as usize;
                m[i] ^= 1 << (next() % 8);
            }
            if let Ok(p) = ImportParameters::parse(&m, now()) {
                assert!([2048, 3072, 4096].contains(&p.wrapping_key_bits));
                assert!((1..=MAX_IMPORT_TOKEN_LEN).contains(&p.import_token.len()));
                assert!(valid_key_id(&p.key_id));
                assert!(p.valid_to > now());
            }
        }
    }

    fn rand_core_os() -> rsa::rand_core::OsRng {
        rsa::rand_core::OsRng
    }
}
