//! Custodian signing keys on a PKCS#11 token (a smartcard, a YubiKey's PIV
//! applet through its PKCS#11 module, or SoftHSM2 in tests), and signing with
//! them. The private key never leaves the token: it is created sensitive and
//! not extractable, with no usage but signing.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use der::Encode;
use sha2::{Digest, Sha256, Sha384};

use super::{During, HsmError, UserSession};
use crate::kms::key_spec::Curve;

/// The kinds of custodian key we create and verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustodianKeyType {
    /// ECDSA P-256 with SHA-256.
    EcP256,
    /// ECDSA P-384 with SHA-384.
    EcP384,
    /// RSA-3072 with RSA-PSS SHA-256.
    Rsa3072,
}

impl std::str::FromStr for CustodianKeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ec-p256" | "p256" => Ok(CustodianKeyType::EcP256),
            "ec-p384" | "p384" => Ok(CustodianKeyType::EcP384),
            "rsa-3072" | "rsa3072" => Ok(CustodianKeyType::Rsa3072),
            _ => Err(format!("{s:?} is not one of ec-p256, ec-p384, rsa-3072")),
        }
    }
}

/// A custodian's signing key found on the token.
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// The private key object.
    pub handle: ObjectHandle,
    /// The public key, DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Its kind.
    pub kind: CustodianKeyType,
}

fn curve_of(kind: CustodianKeyType) -> Option<Curve> {
    match kind {
        CustodianKeyType::EcP256 => Some(Curve::P256),
        CustodianKeyType::EcP384 => Some(Curve::P384),
        CustodianKeyType::Rsa3072 => None,
    }
}

/// Generate a custodian signing key pair labelled `label`; returns its SPKI.
pub fn generate(
    session: &UserSession,
    kind: CustodianKeyType,
    label: &str,
) -> Result<Vec<u8>, HsmError> {
    super::keygen::ensure_label_free(session, label)?;
    let id = session.random(16)?;
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.clone()),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    let mechanism = match curve_of(kind) {
        Some(curve) => {
            public.push(Attribute::EcParams(
                curve.oid().to_der().expect("OID encodes"),
            ));
            Mechanism::EccKeyPairGen
        }
        None => {
            public.push(Attribute::ModulusBits(3072u64.into()));
            public.push(Attribute::PublicExponent(vec![1, 0, 1]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let (pub_handle, _) = session
        .raw_session()
        .generate_key_pair(&mechanism, &public, &private)
        .during("generating the custodian signing key")?;
    public_spki(session, kind, pub_handle)
}

fn public_spki(
    session: &UserSession,
    kind: CustodianKeyType,
    public: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    let spec = match kind {
        CustodianKeyType::EcP256 => crate::kms::KeySpec::EccNistP256,
        CustodianKeyType::EcP384 => crate::kms::KeySpec::EccNistP384,
        CustodianKeyType::Rsa3072 => crate::kms::KeySpec::Rsa3072,
    };
    super::key_checks::public_key_der(session, spec, public)
}

/// Find the custodian signing key labelled `label`.
pub fn find(session: &UserSession, label: &str) -> Result<SigningKey, HsmError> {
    let token = session.hsm().facts.label.clone();
    let s = session.raw_session();
    let privs = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .during("searching for the signing key")?;
    let handle = match privs.as_slice() {
        [one] => *one,
        [] => {
            return Err(HsmError::KeyNotFound {
                label: label.into(),
                token,
            })
        }
        many => {
            return Err(HsmError::AmbiguousKey {
                label: label.into(),
                token,
                count: many.len(),
            })
        }
    };
    let attrs = s
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::Id,
                AttributeType::EcParams,
                AttributeType::Modulus,
            ],
        )
        .during("reading the signing key")?;
    let (mut key_type, mut id, mut params, mut bits) = (None, Vec::new(), None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::Id(v) => id = v,
            Attribute::EcParams(p) => params = Some(p),
            Attribute::Modulus(m) => bits = Some(rsa::BigUint::from_bytes_be(&m).bits()),
            _ => {}
        }
    }
    let oid = |c: Curve| c.oid().to_der().expect("OID encodes");
    let kind =
        match (key_type, params, bits) {
            (Some(KeyType::EC), Some(p), _) if p == oid(Curve::P256) => CustodianKeyType::EcP256,
            (Some(KeyType::EC), Some(p), _) if p == oid(Curve::P384) => CustodianKeyType::EcP384,
            (Some(KeyType::RSA), _, Some(b)) if b >= 3072 => CustodianKeyType::Rsa3072,
            _ => return Err(HsmError::KeyUnsuitable {
                label: label.into(),
                reason:
                    "custodian keys must be ECDSA P-256, ECDSA P-384 or RSA of at least 3072 bits"
                        .into(),
            }),
        };
    let pubs = s
        .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Id(id)])
        .during("searching for the signing key's public key")?;
    let [public] = pubs.as_slice() else {
        return Err(HsmError::KeyUnsuitable {
            label: label.into(),
            reason: "exactly one public key object with the same CKA_ID is needed".into(),
        });
    };
    Ok(SigningKey {
        handle,
        spki: public_spki(session, kind, *public)?,
        kind,
    })
}

/// Sign `message` in the token: ECDSA over its SHA-256 / SHA-384 (returned as
/// ASN.1 DER, normalized to low S after the token signs, since verification
/// accepts only low S), or RSA-PSS SHA-256 with a 32-byte salt.
pub fn sign(session: &UserSession, key: &SigningKey, message: &[u8]) -> Result<Vec<u8>, HsmError> {
    let s = session.raw_session();
    match key.kind {
        CustodianKeyType::EcP256 | CustodianKeyType::EcP384 => {
            let digest = if key.kind == CustodianKeyType::EcP256 {
                Sha256::digest(message).to_vec()
            } else {
                Sha384::digest(message).to_vec()
            };
            let raw = s
                .sign(&Mechanism::Ecdsa, key.handle, &digest)
                .during("signing with CKM_ECDSA")?;
            crate::ceremony::dsse::ecdsa_raw_to_der(&raw).ok_or_else(|| HsmError::Unsupported {
                token: session.hsm().facts.label.clone(),
                what: "sign with ECDSA".into(),
                detail: format!(
                    "the token returned a {}-byte signature, not r || s",
                    raw.len()
                ),
            })
        }
        CustodianKeyType::Rsa3072 => s
            .sign(
                &Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32u64.into(),
                }),
                key.handle,
                message,
            )
            .during("signing with CKM_SHA256_RSA_PKCS_PSS"),
    }
}
