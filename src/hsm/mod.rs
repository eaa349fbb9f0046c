//! The HSM driver: loads a PKCS#11 module, selects a token, logs in, and
//! offers the few operations the ceremony needs. Key material never leaves
//! the token through this module: there is no call that reads `CKA_VALUE`.

pub(crate) mod ffi;
pub(crate) mod key_checks;
pub mod keygen;
pub(crate) mod mechanisms;
pub mod pin;
pub(crate) mod selftest;
pub mod sign;
pub mod wrap;

use std::ffi::CString;
use std::path::PathBuf;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use serde::Serialize;

pub use ffi::RawError;

/// Where the PKCS#11 module is and how to initialize it.
#[derive(Clone, Debug)]
pub struct ModuleSpec {
    /// Path of the module's shared library.
    pub path: PathBuf,
    /// Passed to `C_Initialize` as `pReserved` (NSS softoken needs its configuration there).
    pub init_string: Option<String>,
}

/// Which token to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token with this label.
    Label(String),
    /// The token in this slot.
    Slot(u64),
    /// The only initialized token.
    Only,
}

impl TokenSelector {
    /// The token the command line names: `--token-label`, else `--slot`,
    /// else the only one.
    pub fn from_options(label: Option<&str>, slot: Option<u64>) -> TokenSelector {
        match (label, slot) {
            (Some(l), _) => TokenSelector::Label(l.to_string()),
            (None, Some(s)) => TokenSelector::Slot(s),
            (None, None) => TokenSelector::Only,
        }
    }
}

/// What we record about the token in manifests and transcripts.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TokenFacts {
    /// Slot ID.
    pub slot_id: u64,
    /// Token label.
    pub label: String,
    /// Token serial number.
    pub serial: String,
    /// Token model.
    pub model: String,
    /// Token manufacturer.
    pub manufacturer: String,
    /// Token firmware version.
    pub firmware: String,
    /// Module (library) description and version.
    pub library: String,
}

/// An HSM operation that failed, said so that a custodian knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The module file does not exist.
    #[error("PKCS#11 module {0} does not exist; pass --module with the path of your HSM vendor's PKCS#11 library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)")]
    ModuleMissing(PathBuf),
    /// The module would not load or initialize.
    #[error("cannot load PKCS#11 module {path}: {reason}")]
    ModuleLoad {
        /// The module.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No token matched.
    #[error("no token {wanted} found in {module}; tokens present: {present}")]
    NoToken {
        /// What was asked for.
        wanted: String,
        /// The module.
        module: PathBuf,
        /// The tokens there are.
        present: String,
    },
    /// More than one token matched.
    #[error("{count} tokens match {wanted}: {present}; choose one with --slot")]
    AmbiguousToken {
        /// What was asked for.
        wanted: String,
        /// How many matched.
        count: usize,
        /// The candidates.
        present: String,
    },
    /// The PIN was rejected.
    #[error("the PIN for token {0:?} is incorrect; nothing was done. Tokens lock the PIN after a few wrong tries: check it before trying again")]
    PinIncorrect(String),
    /// The PIN is locked.
    #[error("the user PIN of token {0:?} is locked; the token's security officer must unlock it (SoftHSM2: softhsm2-util --init-pin, or re-initialize the token)")]
    PinLocked(String),
    /// The PIN has the wrong length.
    #[error("the PIN for token {0:?} has a length the token does not accept; check you are using the user PIN")]
    PinLength(String),
    /// The security officer could not log in.
    #[error("the security officer PIN for token {0:?} was refused ({1}); marking the KMS wrapping key trusted needs the SO. Check the SO PIN envelope; nothing was done")]
    SoLogin(String, String),
    /// A PIN could not be read.
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    /// A key with this label already exists.
    #[error("a key labelled {label:?} already exists on token {token:?}; choose another --label, or pass --existing to wrap that key again")]
    LabelTaken {
        /// The label.
        label: String,
        /// The token.
        token: String,
    },
    /// No key with this label.
    #[error("no key labelled {label:?} on token {token:?}; check the label (`byok-airgap keys` lists them) or drop --existing to generate one")]
    KeyNotFound {
        /// The label.
        label: String,
        /// The token.
        token: String,
    },
    /// More than one key with this label.
    #[error("{count} keys are labelled {label:?} on token {token:?}; refusing to guess which one to export. Give them distinct labels first")]
    AmbiguousKey {
        /// The label.
        label: String,
        /// The token.
        token: String,
        /// How many.
        count: usize,
    },
    /// An existing key is not what the key spec says, or is not safe to export.
    #[error("the key labelled {label:?} cannot be used: {reason}")]
    KeyUnsuitable {
        /// The label.
        label: String,
        /// Why.
        reason: String,
    },
    /// A `CKA_ID` given for a new key cannot be used.
    #[error("CKA_ID {id_hex} cannot be used for a new key: {reason}")]
    BadKeyId {
        /// The ID, hex.
        id_hex: String,
        /// Why.
        reason: String,
    },
    /// The token lacks a mechanism we need.
    #[error("token {token:?} cannot {what}: {detail}")]
    Unsupported {
        /// The token.
        token: String,
        /// What we wanted to do.
        what: String,
        /// Details and what to do instead.
        detail: String,
    },
    /// The known-answer test refused this token's output.
    #[error("self-test failed on token {token:?} for {what}:\n{detail}")]
    SelfTest {
        /// The token.
        token: String,
        /// What was tested.
        what: String,
        /// Each candidate's failure, and what to use instead.
        detail: String,
    },
    /// Any other PKCS#11 failure.
    #[error("HSM error while {during}: {source}")]
    Pkcs11 {
        /// What we were doing.
        during: String,
        /// The PKCS#11 error.
        source: CkError,
    },
    /// A raw PKCS#11 call failed.
    #[error("HSM error while {during}: {rv}")]
    Raw {
        /// What we were doing.
        during: String,
        /// The return value.
        rv: RawError,
    },
}

/// A short name for a `cryptoki` error, e.g. `C_WrapKey: CKR ArgumentsBad`,
/// for one-line messages (the crate's own text is a paragraph).
pub fn short(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => format!("{f:?} returned {rv:?}"),
        other => other.to_string(),
    }
}

/// Attach what we were doing to a `cryptoki` error.
pub(crate) trait During<T> {
    fn during(self, what: &str) -> Result<T, HsmError>;
}

impl<T> During<T> for Result<T, CkError> {
    fn during(self, what: &str) -> Result<T, HsmError> {
        self.map_err(|source| HsmError::Pkcs11 {
            during: what.to_string(),
            source,
        })
    }
}

/// A loaded module with one selected token.
pub struct Hsm {
    ctx: Pkcs11,
    raw: ffi::RawModule,
    slot: Slot,
    /// Facts about the selected token.
    pub facts: TokenFacts,
    // Kept alive for the module's lifetime, in case it keeps the pointer.
    _init_string: Option<CString>,
}

/// Load the module and call `C_Initialize` (with its init string, kept
/// alive as long as the module is).
fn load_and_initialize(module: &ModuleSpec) -> Result<(Pkcs11, Option<CString>), HsmError> {
    if !module.path.exists() {
        return Err(HsmError::ModuleMissing(module.path.clone()));
    }
    let load_err = |reason: String| HsmError::ModuleLoad {
        path: module.path.clone(),
        reason,
    };
    let ctx = Pkcs11::new(&module.path).map_err(|e| load_err(e.to_string()))?;
    let init_string = match &module.init_string {
        Some(s) => Some(
            CString::new(s.as_str())
                .map_err(|_| load_err("the init string contains a NUL byte".into()))?,
        ),
        None => None,
    };
    ffi::initialize(&ctx, init_string.as_ref()).map_err(|e| {
        load_err(format!(
            "C_Initialize failed ({e}){}",
            if module.init_string.is_none() {
                "; some modules (NSS softoken) need --module-init-string"
            } else {
                "; check --module-init-string"
            }
        ))
    })?;
    Ok((ctx, init_string))
}

/// The one slot whose token `token` selects; none or several is an error
/// that lists the tokens present.
fn select_slot(ctx: &Pkcs11, module: &ModuleSpec, token: &TokenSelector) -> Result<Slot, HsmError> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .during("listing token slots")?;
    let (wanted, chosen): (String, Vec<Slot>) = match token {
        TokenSelector::Label(label) => (
            format!("labelled {label:?}"),
            slots
                .iter()
                .copied()
                .filter(|s| {
                    ctx.get_token_info(*s)
                        .map(|t| t.label().trim() == label.trim())
                        .unwrap_or(false)
                })
                .collect(),
        ),
        TokenSelector::Slot(id) => (
            format!("in slot {id}"),
            slots.iter().copied().filter(|s| s.id() == *id).collect(),
        ),
        TokenSelector::Only => ("(no --token-label or --slot given)".into(), slots.clone()),
    };
    match chosen.as_slice() {
        [one] => Ok(*one),
        [] => Err(HsmError::NoToken {
            wanted,
            module: module.path.clone(),
            present: describe_tokens(ctx, &slots),
        }),
        many => Err(HsmError::AmbiguousToken {
            wanted: if *token == TokenSelector::Only {
                "no --token-label".into()
            } else {
                wanted
            },
            count: many.len(),
            present: describe_tokens(ctx, many),
        }),
    }
}

/// What the token in `slot` and the module report about themselves.
fn token_facts(ctx: &Pkcs11, slot: Slot) -> Result<TokenFacts, HsmError> {
    let info = ctx
        .get_token_info(slot)
        .during("reading token information")?;
    let lib = ctx
        .get_library_info()
        .during("reading module information")?;
    Ok(TokenFacts {
        slot_id: slot.id(),
        label: info.label().trim().to_string(),
        serial: info.serial_number().trim().to_string(),
        model: info.model().trim().to_string(),
        manufacturer: info.manufacturer_id().trim().to_string(),
        firmware: info.firmware_version().to_string(),
        library: format!(
            "{} {}",
            lib.library_description().trim(),
            lib.library_version()
        ),
    })
}

fn describe_tokens(ctx: &Pkcs11, slots: &[Slot]) -> String {
    let names: Vec<String> = slots
        .iter()
        .filter_map(|s| {
            ctx.get_token_info(*s).ok().map(|t| {
                format!(
                    "{:?} (slot {}, serial {})",
                    t.label().trim(),
                    s.id(),
                    t.serial_number().trim()
                )
            })
        })
        .collect();
    if names.is_empty() {
        "none (initialize one first, see SoftHSM.md)".to_string()
    } else {
        names.join(", ")
    }
}

impl Hsm {
    /// Load `module`, initialize it and select the token.
    pub fn open(module: &ModuleSpec, token: &TokenSelector) -> Result<Self, HsmError> {
        let (ctx, init_string) = load_and_initialize(module)?;
        // The one unsafe call outside `ffi`: a second handle on the module
        // `ctx` just loaded and initialized, looked up with RTLD_NOLOAD.
        #[allow(unsafe_code)]
        // SAFETY: `module.path` is the module `ctx` loaded and initialized
        // above; `raw` lives in the same `Hsm` as `ctx` and is not used after
        // `Hsm::drop` finalizes it.
        let raw =
            unsafe { ffi::RawModule::open(&module.path) }.map_err(|e| HsmError::ModuleLoad {
                path: module.path.clone(),
                reason: e.to_string(),
            })?;
        let slot = select_slot(&ctx, module, token)?;
        let facts = token_facts(&ctx, slot)?;
        Ok(Hsm {
            ctx,
            raw,
            slot,
            facts,
            _init_string: init_string,
        })
    }

    /// Open a read-write session and log in as the user.
    pub fn login(&self, pin: &SecretString) -> Result<UserSession<'_>, HsmError> {
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .during("opening a session")?;
        match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(login_error(e, &self.facts.label)),
        }
        Ok(UserSession { hsm: self, session })
    }
}

/// Turn a failed `C_Login` into a message that says what to do.
pub(crate) fn login_error(e: CkError, token: &str) -> HsmError {
    let token = token.to_string();
    match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => HsmError::PinIncorrect(token),
        CkError::Pkcs11(RvError::PinLocked, _) => HsmError::PinLocked(token),
        CkError::Pkcs11(RvError::PinLenRange, _) => HsmError::PinLength(token),
        e => HsmError::Pkcs11 {
            during: "logging in".into(),
            source: e,
        },
    }
}

impl Hsm {
    /// Log in for wrapping keys that carry `CKA_WRAP_WITH_TRUSTED`.
    ///
    /// Only the security officer may set `CKA_TRUSTED`. So, in one session:
    /// the SO logs in, each of `trusted` (RSA public keys whose fingerprints
    /// the custodians confirmed) is created as a public session object with
    /// `CKA_TRUSTED` and `CKA_WRAP`, the SO logs out, and the user logs in.
    /// Public session objects survive the change of login; they vanish when
    /// the session closes. Returns the session and the trusted keys' handles.
    pub(crate) fn login_trusting(
        &self,
        user_pin: &SecretString,
        so_pin: &SecretString,
        trusted: &[(&rsa::RsaPublicKey, &str)],
    ) -> Result<(UserSession<'_>, Vec<cryptoki::object::ObjectHandle>), HsmError> {
        use cryptoki::object::{Attribute, KeyType, ObjectClass};
        use rsa::traits::PublicKeyParts;
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .during("opening a session")?;
        session
            .login(UserType::So, Some(so_pin))
            .map_err(|e| HsmError::SoLogin(self.facts.label.clone(), short(&e)))?;
        let mut handles = Vec::new();
        for (key, label) in trusted {
            let template = [
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(false),
                Attribute::Private(false),
                Attribute::Trusted(true),
                Attribute::Wrap(true),
                Attribute::Encrypt(false),
                Attribute::Verify(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Modulus(key.n().to_bytes_be()),
                Attribute::PublicExponent(key.e().to_bytes_be()),
            ];
            match session.create_object(&template) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    let _ = session.logout();
                    return Err(e)
                        .during("creating the trusted KMS wrapping key as security officer");
                }
            }
        }
        session
            .logout()
            .during("logging the security officer out")?;
        match session.login(UserType::User, Some(user_pin)) {
            Ok(()) => {}
            Err(e) => return Err(login_error(e, &self.facts.label)),
        }
        Ok((UserSession { hsm: self, session }, handles))
    }
}

impl Drop for Hsm {
    fn drop(&mut self) {
        // cryptoki does not finalize on drop; sessions borrow `self` and are gone by now.
        let _ = self.ctx.clone().finalize();
    }
}

/// A logged-in read-write session on the selected token.
pub struct UserSession<'a> {
    hsm: &'a Hsm,
    session: Session,
}

impl<'a> UserSession<'a> {
    /// The token this session is on.
    pub fn hsm(&self) -> &'a Hsm {
        self.hsm
    }

    /// The underlying `cryptoki` session.
    pub(crate) fn raw_session(&self) -> &Session {
        &self.session
    }

    /// Random bytes from the token's generator.
    pub(crate) fn random(&self, len: usize) -> Result<Vec<u8>, HsmError> {
        self.session
            .generate_random_vec(len as u32)
            .during("drawing random bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn the_label_wins_then_the_slot_then_the_only_token() {
        for (label, slot, want) in [
            (Some("t"), Some(3), TokenSelector::Label("t".into())),
            (None, Some(3), TokenSelector::Slot(3)),
            (None, None, TokenSelector::Only),
        ] {
            assert_eq!(TokenSelector::from_options(label, slot), want);
        }
    }

    #[test]
    fn login_failures_say_what_to_do() {
        let m = login_error(CkError::Pkcs11(RvError::PinLocked, Function::Login), "t1").to_string();
        assert!(
            m.contains("locked") && m.contains("security officer"),
            "{m}"
        );
        let m = login_error(
            CkError::Pkcs11(RvError::PinIncorrect, Function::Login),
            "t1",
        )
        .to_string();
        assert!(m.contains("incorrect") && m.contains("lock"), "{m}");
        let m =
            login_error(CkError::Pkcs11(RvError::PinLenRange, Function::Login), "t1").to_string();
        assert!(m.contains("length"), "{m}");
    }
}
