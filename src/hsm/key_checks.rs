//! Values computed inside the HSM that let anyone check, later, that KMS holds
//! the same key: the AES key check value, an HMAC over a fixed message, and the
//! public key of an asymmetric key. None of them reveals the key.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use rsa::pkcs8::EncodePublicKey;
use serde::{Deserialize, Serialize};

use super::keygen::HsmKey;
use super::{During, HsmError, UserSession};
use crate::kms::key_spec::{HmacHash, KeyFamily, KeySpec};

/// The fixed message whose HMAC is recorded for HMAC keys.
pub(crate) const HMAC_CHECK_MESSAGE: &[u8] = b"byok-ceremony HMAC check v1";

/// An HMAC of a fixed message, computed in the HSM, to compare with KMS GenerateMac.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HmacCheck {
    /// The KMS MacAlgorithm, e.g. `HMAC_SHA_256`.
    pub mac_algorithm: String,
    /// The message, lowercase hex.
    pub message_hex: String,
    /// The MAC, lowercase hex.
    pub mac_hex: String,
}

fn hmac_mechanism(hash: HmacHash) -> Mechanism<'static> {
    match hash {
        HmacHash::Sha224 => Mechanism::Sha224Hmac,
        HmacHash::Sha256 => Mechanism::Sha256Hmac,
        HmacHash::Sha384 => Mechanism::Sha384Hmac,
        HmacHash::Sha512 => Mechanism::Sha512Hmac,
    }
}

/// Key check value of an AES key: the first 3 bytes of AES-CMAC over 16 zero
/// bytes, lowercase hex, computed in the HSM.
pub fn aes_kcv(session: &UserSession, key: ObjectHandle) -> Result<String, HsmError> {
    let mac = session
        .raw_session()
        .sign(&Mechanism::AesCMac, key, &[0u8; 16])
        .during("computing the key check value (CKM_AES_CMAC)")?;
    Ok(hex::encode(&mac[..3.min(mac.len())]))
}

/// HMAC of [`HMAC_CHECK_MESSAGE`] with an HMAC key, computed in the HSM.
pub fn hmac_check(
    session: &UserSession,
    key: ObjectHandle,
    hash: HmacHash,
) -> Result<HmacCheck, HsmError> {
    let mac = session
        .raw_session()
        .sign(&hmac_mechanism(hash), key, HMAC_CHECK_MESSAGE)
        .during("computing the HMAC check")?;
    Ok(HmacCheck {
        mac_algorithm: hash.kms_mac_algorithm().to_string(),
        message_hex: hex::encode(HMAC_CHECK_MESSAGE),
        mac_hex: hex::encode(mac),
    })
}

/// The DER SubjectPublicKeyInfo of an asymmetric key, read from the public key object.
pub(crate) fn public_key_der(
    session: &UserSession,
    spec: KeySpec,
    public: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    let s = session.raw_session();
    let bad = |reason: String| HsmError::Unsupported {
        token: session.hsm().facts.label.clone(),
        what: "report the public key".into(),
        detail: reason,
    };
    match spec.family() {
        KeyFamily::Rsa => {
            let attrs = s
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .during("reading the RSA public key")?;
            let (mut n, mut e) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = Some(rsa::BigUint::from_bytes_be(&m)),
                    Attribute::PublicExponent(x) => e = Some(rsa::BigUint::from_bytes_be(&x)),
                    _ => {}
                }
            }
            let (Some(n), Some(e)) = (n, e) else {
                return Err(bad(
                    "the public key object has no modulus or exponent".into()
                ));
            };
            let key = rsa::RsaPublicKey::new(n, e).map_err(|e| bad(e.to_string()))?;
            Ok(key
                .to_public_key_der()
                .map_err(|e| bad(e.to_string()))?
                .into_vec())
        }
        KeyFamily::Ec => {
            let attrs = s
                .get_attributes(public, &[AttributeType::EcPoint])
                .during("reading the EC public key")?;
            let point = attrs
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => Some(p),
                    _ => None,
                })
                .ok_or_else(|| bad("the public key object has no CKA_EC_POINT".into()))?;
            let curve = spec.curve().expect("EC spec");
            ec_spki(curve, &point).map_err(bad)
        }
        _ => Err(bad(format!("{spec} has no public key"))),
    }
}

/// Build an EC SubjectPublicKeyInfo from a `CKA_EC_POINT` value (a DER OCTET
/// STRING holding the uncompressed point, or the bare point on some tokens).
pub(crate) fn ec_spki(
    curve: crate::kms::key_spec::Curve,
    ec_point: &[u8],
) -> Result<Vec<u8>, String> {
    let expected = 1 + 2 * curve.scalar_len();
    let point = match OctetString::from_der(ec_point) {
        Ok(o) if o.as_bytes().len() == expected => o.as_bytes().to_vec(),
        _ if ec_point.len() == expected => ec_point.to_vec(),
        _ => {
            return Err(format!(
                "CKA_EC_POINT has an unexpected length {}",
                ec_point.len()
            ))
        }
    };
    if point[0] != 0x04 {
        return Err("CKA_EC_POINT is not an uncompressed point".into());
    }
    let spki = spki::SubjectPublicKeyInfoOwned {
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1"),
            parameters: Some(der::Any::from(curve.oid())),
        },
        subject_public_key: BitString::from_bytes(&point).map_err(|e| e.to_string())?,
    };
    spki.to_der().map_err(|e| e.to_string())
}

/// The values recorded in the manifest for `key`, each computed in the HSM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChecks {
    /// AES key check value (AES keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kcv: Option<String>,
    /// HMAC over a fixed message (HMAC keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_check: Option<HmacCheck>,
    /// Base64 DER SubjectPublicKeyInfo (asymmetric keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// Compute the check values for `key`.
pub(crate) fn compute(session: &UserSession, key: &HsmKey) -> Result<KeyChecks, HsmError> {
    crate::profile::time(crate::profile::Phase::Checks, || compute_now(session, key))
}

fn compute_now(session: &UserSession, key: &HsmKey) -> Result<KeyChecks, HsmError> {
    use base64::Engine as _;
    let mut checks = KeyChecks::default();
    match key.spec.family() {
        KeyFamily::Aes => checks.kcv = Some(aes_kcv(session, key.handle)?),
        KeyFamily::Hmac => {
            checks.hmac_check = Some(hmac_check(
                session,
                key.handle,
                key.spec.hmac_hash().expect("HMAC spec"),
            )?)
        }
        KeyFamily::Rsa | KeyFamily::Ec => {
            let public = key.public.ok_or_else(|| HsmError::KeyUnsuitable {
                label: key.label.clone(),
                reason: "no public key object".into(),
            })?;
            let der = public_key_der(session, key.spec, public)?;
            checks.public_key = Some(base64::engine::general_purpose::STANDARD.encode(der));
        }
    }
    Ok(checks)
}
