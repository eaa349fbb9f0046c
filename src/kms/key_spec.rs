//! KMS key specs and wrapping algorithms, and KMS's rules about which
//! algorithm may wrap which key material.
//!
//! These rules are enforced before the HSM is touched: KMS itself rejects a
//! wrong combination only at upload time, after the custodians have signed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A key spec that AWS KMS can import material for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeySpec {
    /// AES-256 (32 raw bytes).
    SymmetricDefault,
    /// HMAC with SHA-224 (28-byte key).
    #[serde(rename = "HMAC_224")]
    Hmac224,
    /// HMAC with SHA-256 (32-byte key).
    #[serde(rename = "HMAC_256")]
    Hmac256,
    /// HMAC with SHA-384 (48-byte key).
    #[serde(rename = "HMAC_384")]
    Hmac384,
    /// HMAC with SHA-512 (64-byte key).
    #[serde(rename = "HMAC_512")]
    Hmac512,
    /// RSA 2048-bit key pair.
    #[serde(rename = "RSA_2048")]
    Rsa2048,
    /// RSA 3072-bit key pair.
    #[serde(rename = "RSA_3072")]
    Rsa3072,
    /// RSA 4096-bit key pair.
    #[serde(rename = "RSA_4096")]
    Rsa4096,
    /// NIST P-256 key pair.
    #[serde(rename = "ECC_NIST_P256")]
    EccNistP256,
    /// NIST P-384 key pair.
    #[serde(rename = "ECC_NIST_P384")]
    EccNistP384,
    /// NIST P-521 key pair.
    #[serde(rename = "ECC_NIST_P521")]
    EccNistP521,
    /// secp256k1 key pair.
    #[serde(rename = "ECC_SECG_P256K1")]
    EccSecgP256k1,
}

/// The broad family of a key spec, which decides how it is generated and wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    /// AES-256 secret key.
    Aes,
    /// Generic secret used for HMAC.
    Hmac,
    /// RSA key pair.
    Rsa,
    /// Elliptic-curve key pair.
    Ec,
}

/// An elliptic curve KMS can import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1).
    P521,
    /// secp256k1.
    Secp256k1,
}

impl Curve {
    /// The curve's object identifier.
    pub fn oid(self) -> der::asn1::ObjectIdentifier {
        use der::asn1::ObjectIdentifier as Oid;
        match self {
            Curve::P256 => Oid::new_unwrap("1.2.840.10045.3.1.7"),
            Curve::P384 => Oid::new_unwrap("1.3.132.0.34"),
            Curve::P521 => Oid::new_unwrap("1.3.132.0.35"),
            Curve::Secp256k1 => Oid::new_unwrap("1.3.132.0.10"),
        }
    }

    /// Length in bytes of a private scalar on this curve.
    pub fn scalar_len(self) -> usize {
        match self {
            Curve::P256 | Curve::Secp256k1 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// The HMAC hash of an HMAC key spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HmacHash {
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HmacHash {
    /// The KMS MacAlgorithm name that uses this hash.
    pub fn kms_mac_algorithm(self) -> &'static str {
        match self {
            HmacHash::Sha224 => "HMAC_SHA_224",
            HmacHash::Sha256 => "HMAC_SHA_256",
            HmacHash::Sha384 => "HMAC_SHA_384",
            HmacHash::Sha512 => "HMAC_SHA_512",
        }
    }
}

impl KeySpec {
    /// Every key spec, in the order KMS documents them.
    pub const ALL: [KeySpec; 12] = [
        KeySpec::SymmetricDefault,
        KeySpec::Hmac224,
        KeySpec::Hmac256,
        KeySpec::Hmac384,
        KeySpec::Hmac512,
        KeySpec::Rsa2048,
        KeySpec::Rsa3072,
        KeySpec::Rsa4096,
        KeySpec::EccNistP256,
        KeySpec::EccNistP384,
        KeySpec::EccNistP521,
        KeySpec::EccSecgP256k1,
    ];

    /// The KMS name of this key spec, e.g. `SYMMETRIC_DEFAULT`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySpec::SymmetricDefault => "SYMMETRIC_DEFAULT",
            KeySpec::Hmac224 => "HMAC_224",
            KeySpec::Hmac256 => "HMAC_256",
            KeySpec::Hmac384 => "HMAC_384",
            KeySpec::Hmac512 => "HMAC_512",
            KeySpec::Rsa2048 => "RSA_2048",
            KeySpec::Rsa3072 => "RSA_3072",
            KeySpec::Rsa4096 => "RSA_4096",
            KeySpec::EccNistP256 => "ECC_NIST_P256",
            KeySpec::EccNistP384 => "ECC_NIST_P384",
            KeySpec::EccNistP521 => "ECC_NIST_P521",
            KeySpec::EccSecgP256k1 => "ECC_SECG_P256K1",
        }
    }

    /// The family of this key spec.
    pub fn family(self) -> KeyFamily {
        match self {
            KeySpec::SymmetricDefault => KeyFamily::Aes,
            KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512 => {
                KeyFamily::Hmac
            }
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => KeyFamily::Rsa,
            KeySpec::EccNistP256
            | KeySpec::EccNistP384
            | KeySpec::EccNistP521
            | KeySpec::EccSecgP256k1 => KeyFamily::Ec,
        }
    }

    /// Length in bytes of the raw key for secret key specs (AES and HMAC).
    pub fn secret_len(self) -> Option<usize> {
        match self {
            KeySpec::SymmetricDefault => Some(32),
            KeySpec::Hmac224 => Some(28),
            KeySpec::Hmac256 => Some(32),
            KeySpec::Hmac384 => Some(48),
            KeySpec::Hmac512 => Some(64),
            _ => None,
        }
    }

    /// The HMAC hash for HMAC key specs.
    pub fn hmac_hash(self) -> Option<HmacHash> {
        match self {
            KeySpec::Hmac224 => Some(HmacHash::Sha224),
            KeySpec::Hmac256 => Some(HmacHash::Sha256),
            KeySpec::Hmac384 => Some(HmacHash::Sha384),
            KeySpec::Hmac512 => Some(HmacHash::Sha512),
            _ => None,
        }
    }

    /// Modulus length in bits for RSA key specs.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            KeySpec::Rsa2048 => Some(2048),
            KeySpec::Rsa3072 => Some(3072),
            KeySpec::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    /// The curve for EC key specs.
    pub fn curve(self) -> Option<Curve> {
        match self {
            KeySpec::EccNistP256 => Some(Curve::P256),
            KeySpec::EccNistP384 => Some(Curve::P384),
            KeySpec::EccNistP521 => Some(Curve::P521),
            KeySpec::EccSecgP256k1 => Some(Curve::Secp256k1),
            _ => None,
        }
    }

    /// Upper bound on the size of this key's wrapped payload (raw key or
    /// PKCS#8 DER), used to check the OAEP size limit before touching the HSM.
    pub fn max_payload_len(self) -> usize {
        match self {
            // PKCS#8 of an RFC 5915 key with named curve and the optional public key.
            KeySpec::EccNistP256 | KeySpec::EccSecgP256k1 => 138,
            KeySpec::EccNistP384 => 185,
            KeySpec::EccNistP521 => 241,
            KeySpec::Rsa2048 => 1220,
            KeySpec::Rsa3072 => 1800,
            KeySpec::Rsa4096 => 2380,
            other => other.secret_len().unwrap_or(64),
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key spec or wrapping algorithm name that is not one KMS knows.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} {given:?}; expected one of: {expected}")]
pub struct UnknownName {
    kind: &'static str,
    given: String,
    expected: String,
}

impl FromStr for KeySpec {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeySpec::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownName {
                kind: "key spec",
                given: s.to_string(),
                expected: KeySpec::ALL.map(KeySpec::as_str).join(", "),
            })
    }
}

/// The hash used by RSA-OAEP (and MGF1) in a wrapping algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OaepHash {
    /// SHA-1 (20-byte digest).
    #[serde(rename = "SHA_1")]
    Sha1,
    /// SHA-256 (32-byte digest).
    #[serde(rename = "SHA_256")]
    Sha256,
}

impl OaepHash {
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            OaepHash::Sha1 => 20,
            OaepHash::Sha256 => 32,
        }
    }

    /// Short display name.
    pub fn name(self) -> &'static str {
        match self {
            OaepHash::Sha1 => "SHA-1",
            OaepHash::Sha256 => "SHA-256",
        }
    }
}

/// A KMS wrapping algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WrappingAlgorithm {
    /// RSA-OAEP with SHA-1 and MGF1-SHA-1 of the raw key material.
    #[serde(rename = "RSAES_OAEP_SHA_1")]
    RsaesOaepSha1,
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256 of the raw key material.
    #[serde(rename = "RSAES_OAEP_SHA_256")]
    RsaesOaepSha256,
    /// RSA-OAEP(SHA-1) of a fresh AES-256 key, then RFC 5649 wrap of the material.
    #[serde(rename = "RSA_AES_KEY_WRAP_SHA_1")]
    RsaAesKeyWrapSha1,
    /// RSA-OAEP(SHA-256) of a fresh AES-256 key, then RFC 5649 wrap of the material.
    #[serde(rename = "RSA_AES_KEY_WRAP_SHA_256")]
    RsaAesKeyWrapSha256,
}

impl WrappingAlgorithm {
    /// Every wrapping algorithm KMS offers outside China Regions.
    pub const ALL: [WrappingAlgorithm; 4] = [
        WrappingAlgorithm::RsaesOaepSha1,
        WrappingAlgorithm::RsaesOaepSha256,
        WrappingAlgorithm::RsaAesKeyWrapSha1,
        WrappingAlgorithm::RsaAesKeyWrapSha256,
    ];

    /// The KMS name, e.g. `RSAES_OAEP_SHA_256`.
    pub fn as_str(self) -> &'static str {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            WrappingAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            WrappingAlgorithm::RsaAesKeyWrapSha1 => "RSA_AES_KEY_WRAP_SHA_1",
            WrappingAlgorithm::RsaAesKeyWrapSha256 => "RSA_AES_KEY_WRAP_SHA_256",
        }
    }

    /// The OAEP hash this algorithm uses.
    pub fn oaep_hash(self) -> OaepHash {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => {
                OaepHash::Sha1
            }
            WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => {
                OaepHash::Sha256
            }
        }
    }

    /// Whether this is a two-layer RSA + AES key wrap algorithm.
    pub fn is_rsa_aes(self) -> bool {
        matches!(
            self,
            WrappingAlgorithm::RsaAesKeyWrapSha1 | WrappingAlgorithm::RsaAesKeyWrapSha256
        )
    }
}

impl fmt::Display for WrappingAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WrappingAlgorithm {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WrappingAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownName {
                kind: "wrapping algorithm",
                given: s.to_string(),
                expected: WrappingAlgorithm::ALL
                    .map(WrappingAlgorithm::as_str)
                    .join(", "),
            })
    }
}

/// Why KMS would refuse this key spec with this wrapping algorithm.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CombinationError {
    /// Secret keys may only be wrapped with RSAES_OAEP_*.
    #[error(
        "KMS accepts {spec} key material only with RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256, not {algorithm}; request new import parameters with an RSAES_OAEP_* algorithm"
    )]
    SecretNeedsOaep {
        /// The key spec.
        spec: KeySpec,
        /// The refused algorithm.
        algorithm: WrappingAlgorithm,
    },
    /// RSA private keys are too large for OAEP.
    #[error(
        "KMS accepts {spec} key material only with RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256, not {algorithm}; request new import parameters with an RSA_AES_KEY_WRAP_* algorithm"
    )]
    RsaNeedsRsaAes {
        /// The key spec.
        spec: KeySpec,
        /// The refused algorithm.
        algorithm: WrappingAlgorithm,
    },
    /// The payload does not fit in one OAEP block of this wrapping key.
    #[error(
        "{spec} key material (up to {payload} bytes as PKCS#8) does not fit in {algorithm} under a {bits}-bit wrapping key (limit {limit} bytes); use RSA_AES_KEY_WRAP_SHA_256 or a larger wrapping key spec"
    )]
    OaepTooSmall {
        /// The key spec.
        spec: KeySpec,
        /// The algorithm.
        algorithm: WrappingAlgorithm,
        /// Wrapping key modulus bits.
        bits: usize,
        /// Largest payload in bytes.
        payload: usize,
        /// The OAEP limit in bytes.
        limit: usize,
    },
}

/// The largest message RSA-OAEP can carry under a `bits`-bit key with `hash`:
/// k − 2·hLen − 2 bytes.
pub fn oaep_payload_limit(bits: usize, hash: OaepHash) -> usize {
    (bits / 8).saturating_sub(2 * hash.digest_len() + 2)
}

/// Check KMS's rule for wrapping `spec` with `algorithm` under a wrapping key of
/// `wrapping_key_bits`.
pub fn check_combination(
    spec: KeySpec,
    algorithm: WrappingAlgorithm,
    wrapping_key_bits: usize,
) -> Result<(), CombinationError> {
    match spec.family() {
        KeyFamily::Aes | KeyFamily::Hmac if algorithm.is_rsa_aes() => {
            Err(CombinationError::SecretNeedsOaep { spec, algorithm })
        }
        KeyFamily::Rsa if !algorithm.is_rsa_aes() => {
            Err(CombinationError::RsaNeedsRsaAes { spec, algorithm })
        }
        _ if !algorithm.is_rsa_aes() => {
            let limit = oaep_payload_limit(wrapping_key_bits, algorithm.oaep_hash());
            let payload = spec.max_payload_len();
            if payload > limit {
                Err(CombinationError::OaepTooSmall {
                    spec,
                    algorithm,
                    bits: wrapping_key_bits,
                    payload,
                    limit,
                })
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for spec in KeySpec::ALL {
            assert_eq!(spec.as_str().parse::<KeySpec>().unwrap(), spec);
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(json, format!("\"{}\"", spec.as_str()));
        }
        for alg in WrappingAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<WrappingAlgorithm>().unwrap(), alg);
            let json = serde_json::to_string(&alg).unwrap();
            assert_eq!(json, format!("\"{}\"", alg.as_str()));
        }
        let err = "AES_256".parse::<KeySpec>().unwrap_err().to_string();
        assert!(err.contains("SYMMETRIC_DEFAULT"), "{err}");
    }

    #[test]
    fn oaep_limits_match_kms_documentation() {
        assert_eq!(oaep_payload_limit(2048, OaepHash::Sha1), 214);
        assert_eq!(oaep_payload_limit(2048, OaepHash::Sha256), 190);
        assert_eq!(oaep_payload_limit(4096, OaepHash::Sha256), 446);
    }

    #[test]
    fn kms_rules_are_enforced() {
        use WrappingAlgorithm::*;
        assert!(check_combination(KeySpec::SymmetricDefault, RsaesOaepSha1, 2048).is_ok());
        assert!(matches!(
            check_combination(KeySpec::Hmac256, RsaAesKeyWrapSha256, 2048),
            Err(CombinationError::SecretNeedsOaep { .. })
        ));
        assert!(matches!(
            check_combination(KeySpec::Rsa2048, RsaesOaepSha256, 4096),
            Err(CombinationError::RsaNeedsRsaAes { .. })
        ));
        assert!(check_combination(KeySpec::Rsa4096, RsaAesKeyWrapSha1, 2048).is_ok());
        assert!(check_combination(KeySpec::EccNistP256, RsaesOaepSha256, 2048).is_ok());
        assert!(check_combination(KeySpec::EccNistP384, RsaesOaepSha256, 2048).is_ok());
        // A P-521 PKCS#8 key (~241 bytes) does not fit RSA_2048 OAEP, but fits RSA_3072.
        let err = check_combination(KeySpec::EccNistP521, RsaesOaepSha1, 2048).unwrap_err();
        assert!(
            err.to_string().contains("RSA_AES_KEY_WRAP_SHA_256"),
            "{err}"
        );
        assert!(check_combination(KeySpec::EccNistP521, RsaesOaepSha256, 3072).is_ok());
        assert!(check_combination(KeySpec::EccNistP521, RsaAesKeyWrapSha256, 2048).is_ok());
    }
}
