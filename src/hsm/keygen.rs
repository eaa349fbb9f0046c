//! Generating key material inside the HSM with least attributes, and finding
//! existing keys again by label.
//!
//! Every generated secret or private key is a persistent token object that is
//! private, sensitive and extractable (only so that it can be wrapped), with
//! no usage beyond the check value the bastion compares with KMS: AES keys may
//! sign (CMAC, for the KCV), HMAC keys sign and verify; RSA and EC private keys
//! may do nothing at all in the HSM. Generated keys (and public halves) are
//! also `CKA_MODIFIABLE=false` and `CKA_COPYABLE=false`, so nobody can later
//! loosen their attributes or copy them into a looser object; a token that
//! ignores either is not refused, but [`protection`] reads the attributes
//! back and the transcript records what the token reports.
//!
//! An existing key ([`find_existing`]) is accepted only if the token generated
//! it (`CKA_LOCAL`) and it was always sensitive (`CKA_ALWAYS_SENSITIVE`): a key
//! created from a known value with `C_CreateObject` is refused.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use der::Encode;
use std::collections::{HashMap, HashSet};

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
    crate::profile::time(crate::profile::Phase::Search, || {
        session.raw_session().find_objects(template)
    })
    .during("searching the token for keys")
}

/// Refuse if any object on the token already carries `label`.
pub fn ensure_label_free(session: &UserSession, label: &str) -> Result<(), HsmError> {
    if find(session, &[Attribute::Label(label.as_bytes().to_vec())])?.is_empty() {
        Ok(())
    } else {
        Err(label_taken(session, label))
    }
}

fn label_taken(session: &UserSession, label: &str) -> HsmError {
    HsmError::LabelTaken {
        label: label.to_string(),
        token: session.hsm().facts.label.clone(),
    }
}

/// Every `CKA_LABEL` and `CKA_ID` of the objects this session can see, read
/// with one search over the token, and kept up to date with the keys
/// generated through it ([`generate_indexed`]).
///
/// Tokens such as SoftHSM2 search linearly through their objects, so a search
/// per key makes a ceremony of N keys cost O(N²); one index makes it O(N)
/// with the same refusals as [`ensure_label_free`] and [`generate_with_id`]
/// for every object that was on the token when the index was read or that
/// was generated through it. (An object another process creates on the token
/// during the run is not seen; nor was one created between a search and the
/// generation that followed it.)
#[derive(Debug, Default)]
pub struct TokenIndex {
    labels: HashMap<Vec<u8>, Vec<(ObjectHandle, Option<ObjectClass>)>>,
    ids: HashSet<Vec<u8>>,
}

impl TokenIndex {
    /// Read every object's label, ID and class with one search.
    pub fn read(session: &UserSession) -> Result<Self, HsmError> {
        let mut index = TokenIndex::default();
        for handle in find(session, &[])? {
            let attrs = crate::profile::time(crate::profile::Phase::Search, || {
                session.raw_session().get_attributes(
                    handle,
                    &[
                        AttributeType::Label,
                        AttributeType::Id,
                        AttributeType::Class,
                    ],
                )
            })
            .during("reading the labels and IDs of the objects on the token")?;
            let (mut label, mut class) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Label(l) => label = Some(l),
                    Attribute::Id(id) => {
                        index.ids.insert(id);
                    }
                    Attribute::Class(c) => class = Some(c),
                    _ => {}
                }
            }
            if let Some(l) = label {
                index.labels.entry(l).or_default().push((handle, class));
            }
        }
        Ok(index)
    }

    /// Refuse if an indexed object carries `label` (as [`ensure_label_free`]).
    pub fn ensure_label_free(&self, session: &UserSession, label: &str) -> Result<(), HsmError> {
        match self.labels.get(label.as_bytes()) {
            Some(objects) if !objects.is_empty() => Err(label_taken(session, label)),
            _ => Ok(()),
        }
    }

    /// Whether an indexed object has `CKA_ID` `id`.
    pub(crate) fn has_id(&self, id: &[u8]) -> bool {
        self.ids.contains(id)
    }

    /// The indexed objects labelled `label` of class `class`.
    fn with_label(&self, label: &str, class: ObjectClass) -> Vec<ObjectHandle> {
        self.labels
            .get(label.as_bytes())
            .map(|objects| {
                objects
                    .iter()
                    .filter(|(_, c)| *c == Some(class))
                    .map(|(h, _)| *h)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn insert(&mut self, key: &HsmKey, class: ObjectClass) {
        let label = key.label.as_bytes().to_vec();
        let objects = self.labels.entry(label).or_default();
        objects.push((key.handle, Some(class)));
        if let Some(public) = key.public {
            objects.push((public, Some(ObjectClass::PUBLIC_KEY)));
        }
        self.ids.insert(key.id.clone());
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
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
    ];
    if policy.wrap_with_trusted {
        attrs.push(Attribute::WrapWithTrusted(true));
    }
    attrs
}

/// Longest `CKA_ID` [`generate_with_id`] accepts.
pub const MAX_ID_LEN: usize = 64;

/// Generate a key of `spec` labelled `label` inside the token, with a random
/// 16-byte `CKA_ID` (see [`generate_with_id`]).
pub fn generate(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
    policy: KeyPolicy,
) -> Result<HsmKey, HsmError> {
    let id = session.random(16)?;
    generate_with_id(session, spec, label, &id, policy)
}

/// Generate a key of `spec` labelled `label` with `CKA_ID` `id` inside the
/// token, so a caller can record the intended ID before generating (and
/// adopt the key after a crash). Refuses a taken label, and an ID that is
/// empty, longer than [`MAX_ID_LEN`] or already on the token.
pub fn generate_with_id(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
    id: &[u8],
    policy: KeyPolicy,
) -> Result<HsmKey, HsmError> {
    ensure_label_free(session, label)?;
    check_id_len(id)?;
    if !find(session, &[Attribute::Id(id.to_vec())])?.is_empty() {
        return Err(id_taken(session, id));
    }
    generate_unchecked(session, spec, label, id, policy)
}

/// [`generate_with_id`] checked against `index` instead of a search of the
/// token per key (the same refusals), and recorded in `index`.
pub fn generate_indexed(
    session: &UserSession,
    index: &mut TokenIndex,
    spec: KeySpec,
    label: &str,
    id: &[u8],
    policy: KeyPolicy,
) -> Result<HsmKey, HsmError> {
    index.ensure_label_free(session, label)?;
    check_id_len(id)?;
    if index.has_id(id) {
        return Err(id_taken(session, id));
    }
    let key = generate_unchecked(session, spec, label, id, policy)?;
    index.insert(&key, key_class(spec));
    Ok(key)
}

fn check_id_len(id: &[u8]) -> Result<(), HsmError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(HsmError::BadKeyId {
            id_hex: hex::encode(id),
            reason: format!("it must be 1 to {MAX_ID_LEN} bytes"),
        });
    }
    Ok(())
}

fn id_taken(session: &UserSession, id: &[u8]) -> HsmError {
    HsmError::BadKeyId {
        id_hex: hex::encode(id),
        reason: format!(
            "an object with this CKA_ID is already on token {:?}; each key needs its own",
            session.hsm().facts.label
        ),
    }
}

fn key_class(spec: KeySpec) -> ObjectClass {
    match spec.family() {
        KeyFamily::Aes | KeyFamily::Hmac => ObjectClass::SECRET_KEY,
        KeyFamily::Rsa | KeyFamily::Ec => ObjectClass::PRIVATE_KEY,
    }
}

/// Generate after the label and ID were checked.
fn generate_unchecked(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
    id: &[u8],
    policy: KeyPolicy,
) -> Result<HsmKey, HsmError> {
    let id = id.to_vec();
    let attrs = private_attributes(label, &id, policy);
    let what = format!("generating the {spec} key {label:?}");
    let (handle, public) = match spec.family() {
        KeyFamily::Aes | KeyFamily::Hmac => (
            generate_secret(session, spec, label, attrs).during(&what)?,
            None,
        ),
        KeyFamily::Rsa | KeyFamily::Ec => {
            let (public, private) =
                generate_pair(session, spec, label, &id, attrs).during(&what)?;
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

/// Generate an AES or HMAC key with `attrs` (from [`private_attributes`])
/// plus its class, type and length; it signs (HMAC) but never encrypts or wraps.
fn generate_secret(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
    mut attrs: Vec<Attribute>,
) -> cryptoki::error::Result<ObjectHandle> {
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
    let s = session.raw_session();
    crate::profile::time(crate::profile::Phase::Generate, || {
        with_copyable_fallback(session, label, &attrs, |a| s.generate_key(&mechanism, a))
    })
}

/// Generate an RSA or EC key pair: the private key with `attrs` (from
/// [`private_attributes`]) that never signs, and a public key that does
/// nothing but carry the public value. Returns (public, private).
fn generate_pair(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
    id: &[u8],
    mut attrs: Vec<Attribute>,
) -> cryptoki::error::Result<(ObjectHandle, ObjectHandle)> {
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::Verify(false),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
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
    let s = session.raw_session();
    crate::profile::time(crate::profile::Phase::Generate, || {
        with_copyable_fallback(session, label, &attrs, |a| {
            let public_attrs = if a.len() < attrs.len() {
                without_copyable(&public)
            } else {
                public.clone()
            };
            s.generate_key_pair(&mechanism, &public_attrs, a)
        })
    })
}

fn without_copyable(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| !matches!(a, Attribute::Copyable(_)))
        .cloned()
        .collect()
}

/// Generate with `attrs`; if the token refuses the template and nothing
/// labelled `label` was created, generate again without `CKA_COPYABLE`.
/// (NSS softoken answers `CKR_GENERAL_ERROR` to `CKA_COPYABLE` on token
/// objects.) The key is then copyable as far as the token is concerned, and
/// [`protection`] reads it back so the transcript says so.
fn with_copyable_fallback<T>(
    session: &UserSession,
    label: &str,
    attrs: &[Attribute],
    mut generate: impl FnMut(&[Attribute]) -> Result<T, cryptoki::error::Error>,
) -> Result<T, cryptoki::error::Error> {
    use cryptoki::error::{Error, RvError};
    let refused_template = |e: &Error| {
        matches!(
            e,
            Error::Pkcs11(
                RvError::GeneralError
                    | RvError::AttributeTypeInvalid
                    | RvError::AttributeValueInvalid
                    | RvError::TemplateInconsistent,
                _,
            )
        )
    };
    match generate(attrs) {
        Err(e) if refused_template(&e) && ensure_label_free(session, label).is_ok() => {
            generate(&without_copyable(attrs)).map_err(|_| e)
        }
        other => other,
    }
}

/// Find the existing key labelled `label` and check it matches `spec` and is safe to export.
pub fn find_existing(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
) -> Result<HsmKey, HsmError> {
    let class = key_class(spec);
    let found = find(
        session,
        &[
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Class(class),
        ],
    )?;
    existing_among(session, spec, label, &found)
}

/// [`find_existing`] among the objects of `index` instead of a search of the token.
pub fn find_existing_indexed(
    session: &UserSession,
    index: &TokenIndex,
    spec: KeySpec,
    label: &str,
) -> Result<HsmKey, HsmError> {
    let found = index.with_label(label, key_class(spec));
    existing_among(session, spec, label, &found)
}

/// The one key of `found` (the objects labelled `label` of the spec's class),
/// checked as [`find_existing`] describes.
fn existing_among(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
    found: &[ObjectHandle],
) -> Result<HsmKey, HsmError> {
    let handle = the_one(session, label, found)?;
    let unsuitable = |reason: String| HsmError::KeyUnsuitable {
        label: label.to_string(),
        reason,
    };
    let attrs = ExistingAttributes::read(session, handle)?;
    attrs
        .check_never_revealed()
        .map_err(|r| unsuitable(r.into()))?;
    if !attrs.is(spec) {
        return Err(unsuitable(format!(
            "it is not a {spec} key (key type {:?}{})",
            attrs.key_type,
            attrs
                .value_len
                .map(|l| format!(", {l} bytes"))
                .unwrap_or_default()
        )));
    }
    let public = match spec.family() {
        KeyFamily::Rsa | KeyFamily::Ec => Some(matching_public(session, label, &attrs.id)?),
        _ => None,
    };
    Ok(HsmKey {
        label: label.to_string(),
        id: attrs.id,
        spec,
        handle,
        public,
        generated: false,
        wrap_with_trusted: attrs.wrap_with_trusted,
    })
}

/// The one object found under `label`: none and several are errors.
fn the_one(
    session: &UserSession,
    label: &str,
    found: &[ObjectHandle],
) -> Result<ObjectHandle, HsmError> {
    let token = session.hsm().facts.label.clone();
    match found {
        [one] => Ok(*one),
        [] => Err(HsmError::KeyNotFound {
            label: label.to_string(),
            token,
        }),
        many => Err(HsmError::AmbiguousKey {
            label: label.to_string(),
            token,
            count: many.len(),
        }),
    }
}

/// The attributes `--existing` checks before it uses a key.
#[derive(Default)]
struct ExistingAttributes {
    key_type: Option<KeyType>,
    sensitive: Option<bool>,
    extractable: Option<bool>,
    id: Vec<u8>,
    value_len: Option<usize>,
    modulus: Option<Vec<u8>>,
    ec_params: Option<Vec<u8>>,
    wrap_with_trusted: bool,
    local: Option<bool>,
    always_sensitive: Option<bool>,
}

impl ExistingAttributes {
    /// Read them in one `C_GetAttributeValue`.
    fn read(session: &UserSession, handle: ObjectHandle) -> Result<Self, HsmError> {
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
                    AttributeType::Local,
                    AttributeType::AlwaysSensitive,
                ],
            )
            .during("reading the key's attributes")?;
        let mut a = ExistingAttributes::default();
        for attr in attrs {
            match attr {
                Attribute::KeyType(t) => a.key_type = Some(t),
                Attribute::Sensitive(b) => a.sensitive = Some(b),
                Attribute::Extractable(b) => a.extractable = Some(b),
                Attribute::Id(v) => a.id = v,
                Attribute::ValueLen(l) => a.value_len = Some(u64::from(l) as usize),
                Attribute::Modulus(m) => a.modulus = Some(m),
                Attribute::EcParams(p) => a.ec_params = Some(p),
                Attribute::WrapWithTrusted(b) => a.wrap_with_trusted = b,
                Attribute::Local(b) => a.local = Some(b),
                Attribute::AlwaysSensitive(b) => a.always_sensitive = Some(b),
                _ => {}
            }
        }
        Ok(a)
    }

    /// Generated in this token, always sensitive, sensitive, and extractable
    /// (for wrapping); otherwise why not, with what to do.
    fn check_never_revealed(&self) -> Result<(), &'static str> {
        if self.local != Some(true) {
            return Err("it was not generated inside this token (CKA_LOCAL is not true): it was imported (C_CreateObject or C_UnwrapKey), so someone may know its value. Generate a new key instead (drop --existing, or choose another label)");
        }
        if self.always_sensitive != Some(true) {
            return Err("it has not always been sensitive (CKA_ALWAYS_SENSITIVE is not true): its value could have been read out of the HSM before it was made sensitive. Generate a new key instead (drop --existing, or choose another label)");
        }
        if self.sensitive != Some(true) {
            return Err("it is not CKA_SENSITIVE, so its plaintext could be read out of the HSM; it may already have been exposed. Generate a new key instead");
        }
        if self.extractable != Some(true) {
            return Err(
                "it is not CKA_EXTRACTABLE, so the HSM cannot wrap it for KMS. Generate a new key instead",
            );
        }
        Ok(())
    }

    /// Whether the key is of `spec` (type, and length, modulus or curve).
    fn is(&self, spec: KeySpec) -> bool {
        match spec.family() {
            KeyFamily::Aes => {
                self.key_type == Some(KeyType::AES) && self.value_len == spec.secret_len()
            }
            KeyFamily::Hmac => {
                self.key_type == Some(KeyType::GENERIC_SECRET)
                    && self.value_len == spec.secret_len()
            }
            KeyFamily::Rsa => {
                self.key_type == Some(KeyType::RSA)
                    && self
                        .modulus
                        .as_ref()
                        .map(|m| rsa::BigUint::from_bytes_be(m).bits())
                        == spec.rsa_bits()
            }
            KeyFamily::Ec => {
                self.key_type == Some(KeyType::EC) && self.ec_params == Some(ec_params(spec))
            }
        }
    }
}

/// The one public key object with CKA_ID `id`, the pair of the key `label`.
fn matching_public(
    session: &UserSession,
    label: &str,
    id: &[u8],
) -> Result<ObjectHandle, HsmError> {
    let pubs = find(
        session,
        &[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.to_vec()),
        ],
    )?;
    let reason = match pubs.as_slice() {
        [one] => return Ok(*one),
        [] => format!(
            "no public key object with the same CKA_ID ({}) is on the token, so its public key cannot be recorded",
            hex::encode(id)
        ),
        _ => format!(
            "several public key objects share its CKA_ID ({})",
            hex::encode(id)
        ),
    };
    Err(HsmError::KeyUnsuitable {
        label: label.to_string(),
        reason,
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
    /// `CKA_MODIFIABLE` (true when the token does not report it: the
    /// PKCS#11 default). Generated keys ask for false.
    pub modifiable: bool,
    /// `CKA_COPYABLE` (true when the token does not report it: the PKCS#11
    /// default). Generated keys ask for false.
    pub copyable: bool,
}

/// Read the protection attributes of `handle`.
pub fn protection(session: &UserSession, handle: ObjectHandle) -> Result<KeyProtection, HsmError> {
    crate::profile::time(crate::profile::Phase::Checks, || {
        protection_now(session, handle)
    })
}

fn protection_now(session: &UserSession, handle: ObjectHandle) -> Result<KeyProtection, HsmError> {
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
                AttributeType::Modifiable,
                AttributeType::Copyable,
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
        modifiable: true,
        copyable: true,
    };
    for a in attrs {
        match a {
            Attribute::Sensitive(b) => p.sensitive = b,
            Attribute::Extractable(b) => p.extractable = b,
            Attribute::AlwaysSensitive(b) => p.always_sensitive = b,
            Attribute::NeverExtractable(b) => p.never_extractable = b,
            Attribute::Token(b) => p.token = b,
            Attribute::Private(b) => p.private = b,
            Attribute::Modifiable(b) => p.modifiable = b,
            Attribute::Copyable(b) => p.copyable = b,
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

/// Whether the token keeps the promises [`generate`] asks of keys:
/// `CKA_MODIFIABLE=false` and `CKA_COPYABLE=false`, tried on a throwaway
/// AES session key (`byok-airgap mechanisms` reports it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AttributePromises {
    /// `CKA_MODIFIABLE` reads back false and `C_SetAttributeValue` is refused.
    pub unmodifiable: bool,
    /// `CKA_COPYABLE` reads back false and `C_CopyObject` is refused.
    pub uncopyable: bool,
    /// What was observed, one line per check.
    pub observed: Vec<String>,
}

/// Generate a throwaway AES session key with `CKA_MODIFIABLE=false` and
/// `CKA_COPYABLE=false`, read both back, try to change its label and to copy
/// it, and destroy whatever was created.
pub fn attribute_promises(session: &UserSession) -> Result<AttributePromises, HsmError> {
    let s = session.raw_session();
    let label = b"byok-ceremony attribute check (throwaway)".to_vec();
    let key = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32u64.into()),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Label(label),
                Attribute::Modifiable(false),
                Attribute::Copyable(false),
            ],
        )
        .during("generating a throwaway key to check CKA_MODIFIABLE and CKA_COPYABLE")?;
    let outcome = (|| {
        let p = protection(session, key)?;
        let mut observed = Vec::new();
        let modify_refused = s
            .update_attributes(key, &[Attribute::Label(b"changed".to_vec())])
            .is_err();
        observed.push(format!(
            "CKA_MODIFIABLE reads back {}; changing CKA_LABEL was {}",
            p.modifiable,
            if modify_refused { "refused" } else { "allowed" }
        ));
        let copy_refused = match s.copy_object(key, &[]) {
            Ok(copy) => {
                let _ = s.destroy_object(copy);
                false
            }
            Err(_) => true,
        };
        observed.push(format!(
            "CKA_COPYABLE reads back {}; C_CopyObject was {}",
            p.copyable,
            if copy_refused { "refused" } else { "allowed" }
        ));
        Ok(AttributePromises {
            unmodifiable: !p.modifiable && modify_refused,
            uncopyable: !p.copyable && copy_refused,
            observed,
        })
    })();
    let _ = s.destroy_object(key);
    outcome
}
