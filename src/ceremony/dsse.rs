//! DSSE envelopes (the in-toto / Sigstore signing envelope) and the custodian
//! key types we verify: ECDSA P-256 with SHA-256, ECDSA P-384 with SHA-384
//! (ASN.1 DER signatures, as DSSE tooling expects), and RSA-PSS with SHA-256
//! (MGF1-SHA-256, 32-byte salt).
//!
//! ECDSA signatures are unique here: `(r, s)` and `(r, n - s)` both satisfy
//! the ECDSA equation, so only the low-S form (`s <= (n-1)/2`) is accepted, and
//! signing normalizes to it. A second, equally valid encoding of a
//! custodian's signature cannot be minted from the first.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The payload type of a custodian attestation.
pub const PAYLOAD_TYPE: &str = "application/vnd.byok-ceremony.attestation.v1+json";

/// The DSSE pre-authentication encoding that is actually signed:
/// `"DSSEv1" SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// One signature in an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// SHA-256 (hex) of the signer's DER SubjectPublicKeyInfo.
    pub keyid: String,
    /// Base64 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Base64 of the payload bytes.
    pub payload: String,
    /// The payload type.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Signatures over `pae(payload_type, payload)`.
    pub signatures: Vec<Signature>,
}

/// A custodian's public key, parsed from DER SubjectPublicKeyInfo.
#[derive(Clone, Debug)]
pub enum CustodianKey {
    /// ECDSA P-256, SHA-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA P-384, SHA-384.
    P384(p384::ecdsa::VerifyingKey),
    /// RSA-PSS, SHA-256, MGF1-SHA-256, salt 32.
    RsaPss(rsa::RsaPublicKey),
}

/// Why a key or signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not a supported key.
    #[error("not a supported custodian key (ECDSA P-256, ECDSA P-384 or RSA of 3072 to 4096 bits, as DER SubjectPublicKeyInfo): {0}")]
    Unsupported(String),
}

impl CustodianKey {
    /// Parse a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        use p256::pkcs8::DecodePublicKey;
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(CustodianKey::P256(k));
        }
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(CustodianKey::P384(k));
        }
        match rsa::RsaPublicKey::from_public_key_der(der) {
            Ok(k) => {
                use rsa::traits::PublicKeyParts;
                if k.n().bits() < 3072 {
                    Err(KeyError::Unsupported(format!(
                        "RSA-{} is too small",
                        k.n().bits()
                    )))
                } else {
                    Ok(CustodianKey::RsaPss(k))
                }
            }
            Err(e) => Err(KeyError::Unsupported(e.to_string())),
        }
    }

    /// A short name of the algorithm.
    pub fn algorithm(&self) -> &'static str {
        match self {
            CustodianKey::P256(_) => "ECDSA P-256 SHA-256",
            CustodianKey::P384(_) => "ECDSA P-384 SHA-384",
            CustodianKey::RsaPss(_) => "RSA-PSS SHA-256",
        }
    }

    /// Check that `sig` is this key's signature over `message`. ECDSA
    /// signatures must be ASN.1 DER with a low S ([`SignatureError::HighS`]).
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
        use p256::ecdsa::signature::Verifier;
        let malformed = |e: &dyn std::fmt::Display| SignatureError::Malformed(e.to_string());
        let checked = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(SignatureError::Invalid)
            }
        };
        match self {
            CustodianKey::P256(k) => {
                let s = p256::ecdsa::Signature::from_der(sig).map_err(|e| malformed(&e))?;
                if s.normalize_s().is_some() {
                    return Err(SignatureError::HighS);
                }
                checked(k.verify(message, &s).is_ok())
            }
            CustodianKey::P384(k) => {
                let s = p384::ecdsa::Signature::from_der(sig).map_err(|e| malformed(&e))?;
                if s.normalize_s().is_some() {
                    return Err(SignatureError::HighS);
                }
                checked(k.verify(message, &s).is_ok())
            }
            CustodianKey::RsaPss(k) => {
                let vk = rsa::pss::VerifyingKey::<Sha256>::new(k.clone());
                let s = rsa::pss::Signature::try_from(sig).map_err(|e| malformed(&e))?;
                checked(vk.verify(message, &s).is_ok())
            }
        }
    }
}

/// Why a signature was refused (each message completes "the signature …").
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// Not a signature of the key's kind (ECDSA: ASN.1 DER).
    #[error("is not well-formed ({0})")]
    Malformed(String),
    /// An ECDSA signature whose S is in the upper half of the group order.
    #[error("has a high S value (s > n/2): only low-S ECDSA signatures are accepted, so each signature has exactly one valid encoding. byok-airgap signs with low S; a signature made by an earlier version (which did not normalize) or altered by someone has a high S. Move that attestation aside and have the custodian sign again")]
    HighS,
    /// Well-formed, but not this key's signature over the message.
    #[error("does not verify")]
    Invalid,
}

/// The DSSE key ID of a DER SubjectPublicKeyInfo: its SHA-256, hex.
pub fn keyid(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// Decode an envelope's payload.
pub fn payload_bytes(env: &Envelope) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(&env.payload)
}

/// Encode a raw `r || s` ECDSA signature (as PKCS#11 returns it) as ASN.1
/// DER, normalized to low S (a token may return either form; only low S
/// verifies here). 64 bytes is P-256, 96 bytes P-384.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    match raw.len() {
        64 => p256::ecdsa::Signature::from_slice(raw).ok().map(|s| {
            let low = s.normalize_s().unwrap_or(s);
            low.to_der().as_bytes().to_vec()
        }),
        96 => p384::ecdsa::Signature::from_slice(raw).ok().map(|s| {
            let low = s.normalize_s().unwrap_or(s);
            low.to_der().as_bytes().to_vec()
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol description.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn software_keys_verify_and_reject() {
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::EncodePublicKey;
        let sk = p256::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng);
        let der = sk.verifying_key().to_public_key_der().unwrap();
        let key = CustodianKey::from_spki_der(der.as_bytes()).unwrap();
        let msg = pae(PAYLOAD_TYPE, b"{}");
        let sig: p256::ecdsa::Signature = sk.sign(&msg);
        // The RustCrypto signer does not normalize S; half its signatures are high.
        let sig = sig.normalize_s().unwrap_or(sig);
        assert_eq!(key.verify(&msg, sig.to_der().as_bytes()), Ok(()));
        assert_eq!(
            key.verify(&pae(PAYLOAD_TYPE, b"{ }"), sig.to_der().as_bytes()),
            Err(SignatureError::Invalid)
        );
        assert!(
            matches!(
                key.verify(&msg, &sig.to_bytes()),
                Err(SignatureError::Malformed(_))
            ),
            "raw r||s is not accepted, only DER"
        );
        let der_again = ecdsa_raw_to_der(&sig.to_bytes()).unwrap();
        assert_eq!(key.verify(&msg, &der_again), Ok(()));
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let small_der =
            rsa::pkcs8::EncodePublicKey::to_public_key_der(&small.to_public_key()).unwrap();
        assert!(CustodianKey::from_spki_der(small_der.as_bytes()).is_err());
    }

    /// A DER SubjectPublicKeyInfo of an RSA key with a `bits`-bit modulus
    /// (not a real key: only its size matters to the parser).
    fn rsa_spki_of_size(bits: usize) -> Vec<u8> {
        use der::asn1::{BitStringRef, UintRef};
        use der::Encode;
        let mut modulus = vec![0xffu8; bits.div_ceil(8)];
        modulus[0] = 0xff >> (modulus.len() * 8 - bits);
        let key = rsa::pkcs1::RsaPublicKey {
            modulus: UintRef::new(&modulus).unwrap(),
            public_exponent: UintRef::new(&[1, 0, 1]).unwrap(),
        }
        .to_der()
        .unwrap();
        spki::SubjectPublicKeyInfoRef {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1"),
                parameters: Some(der::asn1::AnyRef::NULL),
            },
            subject_public_key: BitStringRef::from_bytes(&key).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn rsa_custodian_keys_are_3072_to_4096_bits() {
        for bits in [3072, 4096] {
            assert!(
                matches!(
                    CustodianKey::from_spki_der(&rsa_spki_of_size(bits)),
                    Ok(CustodianKey::RsaPss(_))
                ),
                "{bits}"
            );
        }
        for bits in [3071, 4097, 8192] {
            assert!(
                matches!(
                    CustodianKey::from_spki_der(&rsa_spki_of_size(bits)),
                    Err(KeyError::Unsupported(_))
                ),
                "{bits}"
            );
        }
    }

    /// `(r, n - s)` from `(r, s)`, for the curve's order `n` (big-endian).
    fn flip_s(raw: &[u8], order_be: &[u8]) -> Vec<u8> {
        let half = raw.len() / 2;
        let n = rsa::BigUint::from_bytes_be(order_be);
        let s = rsa::BigUint::from_bytes_be(&raw[half..]);
        let flipped = (n - s).to_bytes_be();
        let mut out = raw[..half].to_vec();
        out.extend(std::iter::repeat_n(0u8, half - flipped.len()));
        out.extend(flipped);
        out
    }

    #[test]
    fn high_s_is_refused_and_never_produced() {
        use p256::elliptic_curve::bigint::Encoding as _;
        use p256::elliptic_curve::Curve as _;
        let msg = pae(PAYLOAD_TYPE, b"{\"k\":1}");
        // P-256
        let sk = p256::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng);
        let der = p256::pkcs8::EncodePublicKey::to_public_key_der(sk.verifying_key()).unwrap();
        let key = CustodianKey::from_spki_der(der.as_bytes()).unwrap();
        let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&sk, &msg);
        let sig = sig.normalize_s().unwrap_or(sig);
        let order = p256::NistP256::ORDER.to_be_bytes();
        let high = flip_s(&sig.to_bytes(), &order);
        let high_sig = p256::ecdsa::Signature::from_slice(&high).unwrap();
        assert!(high_sig.normalize_s().is_some(), "the flipped S is high");
        assert_eq!(
            key.verify(&msg, high_sig.to_der().as_bytes()),
            Err(SignatureError::HighS)
        );
        // A token may hand back a high S: signing normalizes it.
        let normalized = ecdsa_raw_to_der(&high).unwrap();
        assert_eq!(normalized, sig.to_der().as_bytes());
        assert_eq!(key.verify(&msg, &normalized), Ok(()));
        // P-384
        let sk = p384::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng);
        let der = p384::pkcs8::EncodePublicKey::to_public_key_der(sk.verifying_key()).unwrap();
        let key = CustodianKey::from_spki_der(der.as_bytes()).unwrap();
        let sig: p384::ecdsa::Signature = p384::ecdsa::signature::Signer::sign(&sk, &msg);
        let sig = sig.normalize_s().unwrap_or(sig);
        let order = p384::NistP384::ORDER.to_be_bytes();
        let high = flip_s(&sig.to_bytes(), &order);
        let high_sig = p384::ecdsa::Signature::from_slice(&high).unwrap();
        assert_eq!(
            key.verify(&msg, high_sig.to_der().as_bytes()),
            Err(SignatureError::HighS)
        );
        assert_eq!(key.verify(&msg, &ecdsa_raw_to_der(&high).unwrap()), Ok(()));
    }
}
