//! Generating key material inside the HSM with least attributes, and finding
//! existing keys again by label.
//!
//! Every generated secret or private key is a persistent token object that is
//! private, sensitive and extractable (only so that it can be wrapped), with
//! no usage beyond the check value the bastion compares with KMS: AES keys may
//! sign (CMAC, for the KCV), HMAC keys sign and verify; RSA and EC private keys
//! may do nothing at all in the HSM.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use der::Encode;

use super::{During, HsmError, UserSession};
use crate::kms::key_spec::{KeyFamily, KeySpec};

/// A key on the token that is to be exported to KMS.
#[derive(Clone, Debug)]
pub struct HsmKey {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// The KMS key spec it matches.
    pub spec: KeySpec,
    /// The secret or private key object.
    pub handle: ObjectHandle,
    /// The public key object, for asymmetric keys.
    pub public: Option<ObjectHandle>,
    /// Whether this run generated it.
    pub generated: bool,
    /// `CKA_WRAP_WITH_TRUSTED`: only a key the SO marked trusted may wrap it.
    pub wrap_with_trusted: bool,
}

/// Options for key generation.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyPolicy {
    /// Set `CKA_WRAP_WITH_TRUSTED`, so the key can only be wrapped under keys
    /// the security officer marked `CKA_TRUSTED`.
    pub wrap_with_trusted: bool,
}

fn find(session: &UserSession, template: &[Attribute]) -> Result<Vec<ObjectHandle>, HsmError> {
    session
        .raw_session()
        .find_objects(template)
        .during("searching the token for keys")
}

/// Refuse if any object on the token already carries `label`.
pub fn ensure_label_free(session: &UserSession, label: &str) -> Result<(), HsmError> {
    if find(session, &[Attribute::Label(label.as_bytes().to_vec())])?.is_empty() {
        Ok(())
    } else {
        Err(HsmError::LabelTaken {
            label: label.to_string(),
            token: session.hsm().facts.label.clone(),
        })
    }
}

fn ec_params(spec: KeySpec) -> Vec<u8> {
    spec.curve()
        .expect("EC key spec")
        .oid()
        .to_der()
        .expect("an OID always encodes")
}

fn private_attributes(label: &str, id: &[u8], policy: KeyPolicy) -> Vec<Attribute> {
    let mut attrs = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    if policy.wrap_with_trusted {
        attrs.push(Attribute::WrapWithTrusted(true));
    }
    attrs
}

/// Generate a key of `spec` labelled `label` inside the token, with a random `CKA_ID`.
pub fn generate(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
    policy: KeyPolicy,
) -> Result<HsmKey, HsmError> {
    let id = session.random(16)?;
    generate_with_id(session, spec, label, &id, policy)
}

/// Generate a key of `spec` labelled `label` with the `CKA_ID` `id`, chosen
/// (and recorded) by the caller beforehand, so that a crash between
/// generation and its record can be recognised on resume.
pub fn generate_with_id(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
    id: &[u8],
    policy: KeyPolicy,
) -> Result<HsmKey, HsmError> {
    ensure_label_free(session, label)?;
    let id = id.to_vec();
    let s = session.raw_session();
    let mut attrs = private_attributes(label, &id, policy);
    let what = format!("generating the {spec} key {label:?}");
    let (handle, public) = match spec.family() {
        KeyFamily::Aes | KeyFamily::Hmac => {
            let (mechanism, key_type, verify) = if spec.family() == KeyFamily::Aes {
                (Mechanism::AesKeyGen, KeyType::AES, false)
            } else {
                (
                    Mechanism::GenericSecretKeyGen,
                    KeyType::GENERIC_SECRET,
                    true,
                )
            };
            attrs.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(key_type),
                Attribute::ValueLen((spec.secret_len().expect("secret spec") as u64).into()),
                Attribute::Sign(true),
                Attribute::Verify(verify),
                Attribute::Encrypt(false),
                Attribute::Wrap(false),
            ]);
            (s.generate_key(&mechanism, &attrs).during(&what)?, None)
        }
        KeyFamily::Rsa | KeyFamily::Ec => {
            let mut public = vec![
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.clone()),
                Attribute::Verify(false),
                Attribute::Encrypt(false),
                Attribute::Wrap(false),
            ];
            attrs.push(Attribute::Sign(false));
            let mechanism = if let Some(bits) = spec.rsa_bits() {
                public.push(Attribute::ModulusBits((bits as u64).into()));
                public.push(Attribute::PublicExponent(vec![1, 0, 1]));
                Mechanism::RsaPkcsKeyPairGen
            } else {
                public.push(Attribute::EcParams(ec_params(spec)));
                Mechanism::EccKeyPairGen
            };
            let (public, private) = s
                .generate_key_pair(&mechanism, &public, &attrs)
                .during(&what)?;
            (private, Some(public))
        }
    };
    Ok(HsmKey {
        label: label.to_string(),
        id,
        spec,
        handle,
        public,
        generated: true,
        wrap_with_trusted: policy.wrap_with_trusted,
    })
}

/// Find the existing key labelled `label` and check it matches `spec` and is safe to export.
pub fn find_existing(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
) -> Result<HsmKey, HsmError> {
    let token = session.hsm().facts.label.clone();
    let class = match spec.family() {
        KeyFamily::Aes | KeyFamily::Hmac => ObjectClass::SECRET_KEY,
        KeyFamily::Rsa | KeyFamily::Ec => ObjectClass::PRIVATE_KEY,
    };
    let label_attr = Attribute::Label(label.as_bytes().to_vec());
    let found = find(session, &[label_attr.clone(), Attribute::Class(class)])?;
    let handle = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(HsmError::KeyNotFound {
                label: label.to_string(),
                token,
            })
        }
        many => {
            return Err(HsmError::AmbiguousKey {
                label: label.to_string(),
                token,
                count: many.len(),
            })
        }
    };
    let unsuitable = |reason: String| HsmError::KeyUnsuitable {
        label: label.to_string(),
        reason,
    };
    let attrs = session
        .raw_session()
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Id,
                AttributeType::ValueLen,
                AttributeType::Modulus,
                AttributeType::EcParams,
                AttributeType::WrapWithTrusted,
            ],
        )
        .during("reading the key's attributes")?;
    let mut wrap_with_trusted = false;
    let (mut key_type, mut sensitive, mut extractable, mut id) = (None, None, None, Vec::new());
    let (mut value_len, mut modulus, mut params) = (None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Sensitive(b) => sensitive = Some(b),
            Attribute::Extractable(b) => extractable = Some(b),
            Attribute::Id(v) => id = v,
            Attribute::ValueLen(l) => value_len = Some(u64::from(l) as usize),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::WrapWithTrusted(b) => wrap_with_trusted = b,
            _ => {}
        }
    }
    if sensitive != Some(true) {
        return Err(unsuitable(
            "it is not CKA_SENSITIVE, so its plaintext could be read out of the HSM; it may already have been exposed. Generate a new key instead".into(),
        ));
    }
    if extractable != Some(true) {
        return Err(unsuitable(
            "it is not CKA_EXTRACTABLE, so the HSM cannot wrap it for KMS. Generate a new key instead".into(),
        ));
    }
    let matches = match spec.family() {
        KeyFamily::Aes => key_type == Some(KeyType::AES) && value_len == spec.secret_len(),
        KeyFamily::Hmac => {
            key_type == Some(KeyType::GENERIC_SECRET) && value_len == spec.secret_len()
        }
        KeyFamily::Rsa => {
            key_type == Some(KeyType::RSA)
                && modulus
                    .as_ref()
                    .map(|m| rsa::BigUint::from_bytes_be(m).bits())
                    == spec.rsa_bits()
        }
        KeyFamily::Ec => key_type == Some(KeyType::EC) && params == Some(ec_params(spec)),
    };
    if !matches {
        return Err(unsuitable(format!(
            "it is not a {spec} key (key type {key_type:?}{})",
            value_len
                .map(|l| format!(", {l} bytes"))
                .unwrap_or_default()
        )));
    }
    let public = match spec.family() {
        KeyFamily::Rsa | KeyFamily::Ec => {
            let pubs = find(
                session,
                &[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::Id(id.clone()),
                ],
            )?;
            match pubs.as_slice() {
                [one] => Some(*one),
                [] => {
                    return Err(unsuitable(format!(
                        "no public key object with the same CKA_ID ({}) is on the token, so its public key cannot be recorded",
                        hex::encode(&id)
                    )))
                }
                _ => {
                    return Err(unsuitable(format!(
                        "several public key objects share its CKA_ID ({})",
                        hex::encode(&id)
                    )))
                }
            }
        }
        _ => None,
    };
    Ok(HsmKey {
        label: label.to_string(),
        id,
        spec,
        handle,
        public,
        generated: false,
        wrap_with_trusted,
    })
}

/// The security-relevant attributes of a key object, as the token reports them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyProtection {
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_TOKEN`.
    pub token: bool,
    /// `CKA_PRIVATE`.
    pub private: bool,
}

/// Read the protection attributes of `handle`.
pub fn protection(session: &UserSession, handle: ObjectHandle) -> Result<KeyProtection, HsmError> {
    let attrs = session
        .raw_session()
        .get_attributes(
            handle,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::Token,
                AttributeType::Private,
            ],
        )
        .during("reading the key's protection attributes")?;
    let mut p = KeyProtection {
        sensitive: false,
        extractable: false,
        always_sensitive: false,
        never_extractable: false,
        token: false,
        private: false,
    };
    for a in attrs {
        match a {
            Attribute::Sensitive(b) => p.sensitive = b,
            Attribute::Extractable(b) => p.extractable = b,
            Attribute::AlwaysSensitive(b) => p.always_sensitive = b,
            Attribute::NeverExtractable(b) => p.never_extractable = b,
            Attribute::Token(b) => p.token = b,
            Attribute::Private(b) => p.private = b,
            _ => {}
        }
    }
    Ok(p)
}

/// One secret or private key on the token, as `byok-airgap keys` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyListing {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, lowercase hex.
    pub id_hex: String,
    /// The KMS key spec it matches, if any.
    pub key_spec: Option<KeySpec>,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_WRAP_WITH_TRUSTED`.
    pub wrap_with_trusted: bool,
}

/// Every secret and private key on the token, sorted by label.
pub fn list(session: &UserSession) -> Result<Vec<KeyListing>, HsmError> {
    let mut out = Vec::new();
    for class in [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY] {
        for handle in find(session, &[Attribute::Class(class), Attribute::Token(true)])? {
            let attrs = session
                .raw_session()
                .get_attributes(
                    handle,
                    &[
                        AttributeType::Label,
                        AttributeType::Id,
                        AttributeType::KeyType,
                        AttributeType::ValueLen,
                        AttributeType::Modulus,
                        AttributeType::EcParams,
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::WrapWithTrusted,
                    ],
                )
                .during("reading key attributes")?;
            let mut l = KeyListing {
                label: String::new(),
                id_hex: String::new(),
                key_spec: None,
                sensitive: false,
                extractable: false,
                wrap_with_trusted: false,
            };
            let (mut key_type, mut len, mut bits, mut params) = (None, None, None, None);
            for a in attrs {
                match a {
                    Attribute::Label(v) => l.label = String::from_utf8_lossy(&v).into_owned(),
                    Attribute::Id(v) => l.id_hex = hex::encode(v),
                    Attribute::KeyType(k) => key_type = Some(k),
                    Attribute::ValueLen(v) => len = Some(u64::from(v) as usize),
                    Attribute::Modulus(m) => bits = Some(rsa::BigUint::from_bytes_be(&m).bits()),
                    Attribute::EcParams(p) => params = Some(p),
                    Attribute::Sensitive(b) => l.sensitive = b,
                    Attribute::Extractable(b) => l.extractable = b,
                    Attribute::WrapWithTrusted(b) => l.wrap_with_trusted = b,
                    _ => {}
                }
            }
            l.key_spec = KeySpec::ALL.into_iter().find(|s| match s.family() {
                KeyFamily::Aes => key_type == Some(KeyType::AES) && len == s.secret_len(),
                KeyFamily::Hmac => {
                    key_type == Some(KeyType::GENERIC_SECRET) && len == s.secret_len()
                }
                KeyFamily::Rsa => key_type == Some(KeyType::RSA) && bits == s.rsa_bits(),
                KeyFamily::Ec => {
                    key_type == Some(KeyType::EC) && params.as_deref() == Some(&ec_params(*s)[..])
                }
            });
            out.push(l);
        }
    }
    out.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(out)
}
