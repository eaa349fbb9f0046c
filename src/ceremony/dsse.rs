//! DSSE envelopes (the in-toto / Sigstore signing envelope) and the custodian
//! key types we verify: ECDSA P-256 with SHA-256, ECDSA P-384 with SHA-384
//! (ASN.1 DER signatures, as DSSE tooling expects), and RSA-PSS with SHA-256
//! (MGF1-SHA-256, 32-byte salt).

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
    #[error("not a supported custodian key (ECDSA P-256, ECDSA P-384 or RSA of at least 3072 bits as DER SubjectPublicKeyInfo): {0}")]
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

    /// Whether `sig` is this key's signature over `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        match self {
            CustodianKey::P256(k) => p256::ecdsa::Signature::from_der(sig)
                .map(|s| k.verify(message, &s).is_ok())
                .unwrap_or(false),
            CustodianKey::P384(k) => p384::ecdsa::Signature::from_der(sig)
                .map(|s| k.verify(message, &s).is_ok())
                .unwrap_or(false),
            CustodianKey::RsaPss(k) => {
                let vk = rsa::pss::VerifyingKey::<Sha256>::new(k.clone());
                rsa::pss::Signature::try_from(sig)
                    .map(|s| vk.verify(message, &s).is_ok())
                    .unwrap_or(false)
            }
        }
    }
}

/// The DSSE key ID of a DER SubjectPublicKeyInfo: its SHA-256, hex.
pub fn keyid(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// Decode an envelope's payload.
pub fn payload_bytes(env: &Envelope) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(&env.payload)
}

/// Encode a raw `r || s` ECDSA signature (as PKCS#11 returns it) as ASN.1 DER.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    match raw.len() {
        64 => p256::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|s| s.to_der().as_bytes().to_vec()),
        96 => p384::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|s| s.to_der().as_bytes().to_vec()),
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
        assert!(key.verify(&msg, sig.to_der().as_bytes()));
        assert!(!key.verify(&pae(PAYLOAD_TYPE, b"{ }"), sig.to_der().as_bytes()));
        assert!(
            !key.verify(&msg, &sig.to_bytes()),
            "raw r||s is not accepted, only DER"
        );
        let der_again = ecdsa_raw_to_der(&sig.to_bytes()).unwrap();
        assert!(key.verify(&msg, &der_again));
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let small_der =
            rsa::pkcs8::EncodePublicKey::to_public_key_der(&small.to_public_key()).unwrap();
        assert!(CustodianKey::from_spki_der(small_der.as_bytes()).is_err());
    }
}
