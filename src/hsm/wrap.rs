//! Wrapping inside the HSM, for each KMS wrapping algorithm.
//!
//! The output always has the layout KMS parses:
//! * `RSAES_OAEP_SHA_x`: `OAEP(key material)`;
//! * `RSA_AES_KEY_WRAP_SHA_x`: `OAEP(aes) || RFC5649(aes, key material)`,
//!   produced either by the token's `CKM_RSA_AES_KEY_WRAP` or, inside the
//!   token, by an ephemeral AES-256 session key that is destroyed on every path.
//!
//! Nothing here ever decrypts, unwraps or reads key material.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use serde::Serialize;

use super::ffi::{self, RawMechanism};
use super::mechanisms::{Mechanisms, CKF_GENERATE, CKF_WRAP};
use super::{During, HsmError, UserSession};
use crate::kms::key_spec::{OaepHash, WrappingAlgorithm};

/// Which AES key-wrap-with-padding mechanism produces RFC 5649 on this token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PaddedAesWrap {
    /// `CKM_AES_KEY_WRAP_KWP` (0x210B), RFC 5649 by definition.
    #[serde(rename = "CKM_AES_KEY_WRAP_KWP")]
    Kwp,
    /// `CKM_AES_KEY_WRAP_PAD` (0x210A), RFC 5649 on some tokens (SoftHSM2), PKCS#7 padding on others.
    #[serde(rename = "CKM_AES_KEY_WRAP_PAD")]
    Pad,
}

impl PaddedAesWrap {
    fn mechanism_type(self) -> u64 {
        match self {
            PaddedAesWrap::Kwp => ffi::CKM_AES_KEY_WRAP_KWP,
            PaddedAesWrap::Pad => ffi::CKM_AES_KEY_WRAP_PAD,
        }
    }
}

/// Which way of doing RSA_AES_KEY_WRAP_* the operator allows; the self-test
/// still has to prove it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AesWrapPreference {
    /// The token's `CKM_RSA_AES_KEY_WRAP` if listed, then `CKM_AES_KEY_WRAP_KWP`,
    /// then `CKM_AES_KEY_WRAP_PAD`: the first that passes the self-test.
    #[default]
    Auto,
    /// Only ephemeral AES key + `CKM_AES_KEY_WRAP_KWP` + OAEP.
    Kwp,
    /// Only ephemeral AES key + `CKM_AES_KEY_WRAP_PAD` + OAEP.
    Pad,
}

impl std::str::FromStr for AesWrapPreference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AesWrapPreference::Auto),
            "kwp" => Ok(AesWrapPreference::Kwp),
            "pad" => Ok(AesWrapPreference::Pad),
            _ => Err(format!("{s:?} is not one of auto, kwp, pad")),
        }
    }
}

/// How a KMS wrapping algorithm is carried out on this token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum WrapMethod {
    /// `CKM_RSA_PKCS_OAEP` of the key itself.
    Oaep {
        /// OAEP and MGF1 hash.
        hash: OaepHash,
    },
    /// The token's own `CKM_RSA_AES_KEY_WRAP`.
    NativeRsaAes {
        /// OAEP and MGF1 hash.
        hash: OaepHash,
    },
    /// Ephemeral AES-256 key generated in the token, RFC 5649 wrap of the key
    /// with it, then `CKM_RSA_PKCS_OAEP` of the ephemeral key.
    TwoStepRsaAes {
        /// OAEP and MGF1 hash.
        hash: OaepHash,
        /// The padded AES key wrap mechanism.
        aes_wrap: PaddedAesWrap,
    },
}

impl WrapMethod {
    /// The OAEP hash.
    pub fn hash(&self) -> OaepHash {
        match *self {
            WrapMethod::Oaep { hash }
            | WrapMethod::NativeRsaAes { hash }
            | WrapMethod::TwoStepRsaAes { hash, .. } => hash,
        }
    }

    /// A one-line description naming the PKCS#11 mechanisms.
    pub fn describe(&self) -> String {
        let h = self.hash().name();
        let oaep = format!("CKM_RSA_PKCS_OAEP ({h}, MGF1-{h}, empty label)");
        match self {
            WrapMethod::Oaep { .. } => oaep,
            WrapMethod::NativeRsaAes { .. } => {
                format!("CKM_RSA_AES_KEY_WRAP (AES-256, OAEP {h}, MGF1-{h}, empty label)")
            }
            WrapMethod::TwoStepRsaAes { aes_wrap, .. } => format!(
                "ephemeral AES-256 (CKM_AES_KEY_GEN) + {} + {oaep}",
                match aes_wrap {
                    PaddedAesWrap::Kwp => "CKM_AES_KEY_WRAP_KWP",
                    PaddedAesWrap::Pad => "CKM_AES_KEY_WRAP_PAD",
                }
            ),
        }
    }

    /// The ways this token could carry out `algorithm`, best first, each to be
    /// proven by the self-test; or why there is none.
    pub(crate) fn candidates(
        algorithm: WrappingAlgorithm,
        mechanisms: &Mechanisms,
        preference: AesWrapPreference,
    ) -> Result<Vec<WrapMethod>, String> {
        let hash = algorithm.oaep_hash();
        let oaep = mechanisms.supports(ffi::CKM_RSA_PKCS_OAEP, CKF_WRAP);
        if !algorithm.is_rsa_aes() {
            return if oaep {
                Ok(vec![WrapMethod::Oaep { hash }])
            } else {
                Err("the token does not offer CKM_RSA_PKCS_OAEP for wrapping".into())
            };
        }
        let mut out = Vec::new();
        if preference == AesWrapPreference::Auto
            && mechanisms.supports(ffi::CKM_RSA_AES_KEY_WRAP, CKF_WRAP)
        {
            out.push(WrapMethod::NativeRsaAes { hash });
        }
        let aes_gen = mechanisms.supports(cryptoki_sys::CKM_AES_KEY_GEN, CKF_GENERATE);
        let allowed: &[PaddedAesWrap] = match preference {
            AesWrapPreference::Auto => &[PaddedAesWrap::Kwp, PaddedAesWrap::Pad],
            AesWrapPreference::Kwp => &[PaddedAesWrap::Kwp],
            AesWrapPreference::Pad => &[PaddedAesWrap::Pad],
        };
        if oaep && aes_gen {
            for &aes_wrap in allowed {
                if mechanisms.supports(aes_wrap.mechanism_type(), CKF_WRAP) {
                    out.push(WrapMethod::TwoStepRsaAes { hash, aes_wrap });
                }
            }
        }
        if out.is_empty() {
            Err(format!(
                "the token offers neither CKM_RSA_AES_KEY_WRAP nor CKM_RSA_PKCS_OAEP{} with CKM_AES_KEY_GEN and an AES key wrap with padding (CKM_AES_KEY_WRAP_KWP or CKM_AES_KEY_WRAP_PAD)",
                if oaep { "" } else { " (missing)" }
            ))
        } else {
            Ok(out)
        }
    }
}

/// The KMS wrapping public key, imported into the token as a session object.
/// It is destroyed when dropped (and by the token when the session closes).
pub struct WrappingKey<'s, 'h> {
    session: &'s UserSession<'h>,
    handle: ObjectHandle,
    modulus_len: usize,
}

impl<'s, 'h> WrappingKey<'s, 'h> {
    /// Import `public_key` as a session object allowed only to wrap.
    pub fn import(
        session: &'s UserSession<'h>,
        public_key: &RsaPublicKey,
        label: &str,
    ) -> Result<Self, HsmError> {
        let template = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Wrap(true),
            Attribute::Encrypt(false),
            Attribute::Verify(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Modulus(public_key.n().to_bytes_be()),
            Attribute::PublicExponent(public_key.e().to_bytes_be()),
        ];
        let handle = session
            .raw_session()
            .create_object(&template)
            .during("importing the KMS wrapping public key")?;
        Ok(WrappingKey {
            session,
            handle,
            modulus_len: public_key.size(),
        })
    }
}

impl<'s, 'h> WrappingKey<'s, 'h> {
    /// Take ownership of a wrapping key already created in `session` (by
    /// [`super::Hsm::login_trusting`]); it is destroyed when dropped.
    pub(crate) fn adopt(
        session: &'s UserSession<'h>,
        handle: ObjectHandle,
        public_key: &RsaPublicKey,
    ) -> Self {
        WrappingKey {
            session,
            handle,
            modulus_len: public_key.size(),
        }
    }
}

impl Drop for WrappingKey<'_, '_> {
    fn drop(&mut self) {
        let _ = self.session.raw_session().destroy_object(self.handle);
    }
}

fn oaep_mechanism(hash: OaepHash) -> Mechanism<'static> {
    let (h, mgf) = match hash {
        OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(h, mgf, PkcsOaepSource::empty()))
}

fn unsupported_hash(session: &UserSession, hash: OaepHash, e: &cryptoki::error::Error) -> HsmError {
    HsmError::Unsupported {
        token: session.hsm().facts.label.clone(),
        what: format!("wrap with RSA-OAEP {}", hash.name()),
        detail: format!(
            "C_WrapKey refused the OAEP parameters ({}): this token does not do RSA-OAEP with {} (SoftHSM2 does SHA-1 only). Nothing is ever wrapped in software.",
            super::short(e),
            hash.name()
        ),
    }
}

/// `CKM_RSA_PKCS_OAEP` of `target` under `wrapping_key`; a refusal of the
/// OAEP parameters says which hash this token lacks.
fn oaep_wrap(
    session: &UserSession,
    hash: OaepHash,
    wrapping_key: &WrappingKey,
    target: ObjectHandle,
    during: &str,
) -> Result<Vec<u8>, HsmError> {
    use cryptoki::error::{Error, RvError};
    session
        .raw_session()
        .wrap_key(&oaep_mechanism(hash), wrapping_key.handle, target)
        .map_err(|e| match e {
            Error::Pkcs11(RvError::ArgumentsBad | RvError::MechanismParamInvalid, _) => {
                unsupported_hash(session, hash, &e)
            }
            e => HsmError::Pkcs11 {
                during: during.to_string(),
                source: e,
            },
        })
}

/// Wrap `target` with `method` under `wrapping_key`, entirely inside the token.
pub fn wrap(
    session: &UserSession,
    method: WrapMethod,
    wrapping_key: &WrappingKey,
    target: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    let out = match method {
        WrapMethod::Oaep { hash } => oaep_wrap(
            session,
            hash,
            wrapping_key,
            target,
            &format!("wrapping with {}", method.describe()),
        )?,
        WrapMethod::NativeRsaAes { hash } => session
            .hsm()
            .raw
            .wrap_key(
                session.raw_session().handle(),
                &RawMechanism::RsaAesKeyWrap {
                    sha256: hash == OaepHash::Sha256,
                },
                wrapping_key.handle.handle(),
                target.handle(),
            )
            .map_err(|rv| HsmError::Raw {
                during: format!("wrapping with {}", method.describe()),
                rv,
            })?,
        WrapMethod::TwoStepRsaAes { hash, aes_wrap } => {
            two_step_wrap(session, hash, aes_wrap, wrapping_key, target)?
        }
    };
    check_wrapped_len(session, method, wrapping_key, &out)?;
    Ok(out)
}

/// RSA_AES_KEY_WRAP in two steps: a fresh session-only AES-256 key wraps the
/// target (RFC 5649), RSA-OAEP wraps the AES key, and the AES key is
/// destroyed whatever happens.
fn two_step_wrap(
    session: &UserSession,
    hash: OaepHash,
    aes_wrap: PaddedAesWrap,
    wrapping_key: &WrappingKey,
    target: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    let s = session.raw_session();
    let ephemeral = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32u64.into()),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Wrap(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Unwrap(false),
                Attribute::Label(b"byok-ceremony ephemeral AES".to_vec()),
            ],
        )
        .during("generating the ephemeral AES-256 key")?;
    let result = (|| {
        let inner = aes_wrap_padded(session, aes_wrap, ephemeral, target)?;
        let outer = oaep_wrap(
            session,
            hash,
            wrapping_key,
            ephemeral,
            "wrapping the ephemeral AES key with RSA-OAEP",
        )?;
        Ok::<_, HsmError>([outer, inner].concat())
    })();
    let destroyed = s
        .destroy_object(ephemeral)
        .during("destroying the ephemeral AES key");
    let out = result?;
    destroyed?;
    Ok(out)
}

/// Wrap `target` under `aes_key` with RFC 5649 padded AES key wrap.
fn aes_wrap_padded(
    session: &UserSession,
    aes_wrap: PaddedAesWrap,
    aes_key: ObjectHandle,
    target: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    let (mechanism, name) = match aes_wrap {
        PaddedAesWrap::Pad => (RawMechanism::AesKeyWrapPad, "CKM_AES_KEY_WRAP_PAD"),
        PaddedAesWrap::Kwp => (RawMechanism::AesKeyWrapKwp, "CKM_AES_KEY_WRAP_KWP"),
    };
    session
        .hsm()
        .raw
        .wrap_key(
            session.raw_session().handle(),
            &mechanism,
            aes_key.handle(),
            target.handle(),
        )
        .map_err(|rv| HsmError::Raw {
            during: format!("wrapping with {name}"),
            rv,
        })
}

/// The token's output must have the layout KMS parses: exactly the modulus
/// length for RSA-OAEP, more than it for RSA_AES_KEY_WRAP.
fn check_wrapped_len(
    session: &UserSession,
    method: WrapMethod,
    wrapping_key: &WrappingKey,
    out: &[u8],
) -> Result<(), HsmError> {
    let min = wrapping_key.modulus_len;
    if out.len() < min || (matches!(method, WrapMethod::Oaep { .. }) && out.len() != min) {
        return Err(HsmError::Unsupported {
            token: session.hsm().facts.label.clone(),
            what: format!("wrap with {}", method.describe()),
            detail: format!(
                "the token returned {} bytes, not the layout KMS expects for a {}-byte wrapping key",
                out.len(),
                min
            ),
        });
    }
    Ok(())
}
