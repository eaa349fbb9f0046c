//! What the token says it can do, read from its raw mechanism list (so that
//! mechanisms `cryptoki` cannot name, like `CKM_RSA_AES_KEY_WRAP`, are seen).

// CK_FLAGS is `unsigned long`: u64 here, u32 on Windows; the casts keep that portable.
#![allow(clippy::unnecessary_cast)]

use std::collections::BTreeMap;

use super::{Hsm, HsmError};

/// `CKF_WRAP`.
pub(crate) const CKF_WRAP: u64 = cryptoki_sys::CKF_WRAP as u64;
/// `CKF_GENERATE`.
pub(crate) const CKF_GENERATE: u64 = cryptoki_sys::CKF_GENERATE as u64;

/// The token's mechanisms and their flags.
#[derive(Clone, Debug, Default)]
pub struct Mechanisms {
    flags: BTreeMap<u64, u64>,
}

impl Mechanisms {
    /// Read the mechanism list of the selected token.
    pub fn probe(hsm: &Hsm) -> Result<Self, HsmError> {
        let slot = hsm.facts.slot_id;
        let list = hsm.raw.mechanism_list(slot).map_err(|rv| HsmError::Raw {
            during: "listing mechanisms".into(),
            rv,
        })?;
        let flags = list
            .into_iter()
            .map(|m| (m, hsm.raw.mechanism_flags(slot, m).unwrap_or(0)))
            .collect();
        Ok(Mechanisms { flags })
    }

    /// Whether the token lists `mechanism` with all of `flags`.
    pub(crate) fn supports(&self, mechanism: u64, flags: u64) -> bool {
        self.flags
            .get(&mechanism)
            .is_some_and(|f| f & flags == flags)
    }
}

/// A readable name for the mechanisms we care about.
pub fn name(mechanism: u64) -> String {
    use cryptoki_sys as s;
    let n = match mechanism {
        s::CKM_RSA_PKCS_OAEP => "CKM_RSA_PKCS_OAEP",
        s::CKM_RSA_AES_KEY_WRAP => "CKM_RSA_AES_KEY_WRAP",
        s::CKM_AES_KEY_WRAP => "CKM_AES_KEY_WRAP",
        s::CKM_AES_KEY_WRAP_PAD => "CKM_AES_KEY_WRAP_PAD",
        s::CKM_AES_KEY_WRAP_KWP => "CKM_AES_KEY_WRAP_KWP",
        s::CKM_AES_KEY_GEN => "CKM_AES_KEY_GEN",
        s::CKM_AES_CMAC => "CKM_AES_CMAC",
        s::CKM_GENERIC_SECRET_KEY_GEN => "CKM_GENERIC_SECRET_KEY_GEN",
        s::CKM_RSA_PKCS_KEY_PAIR_GEN => "CKM_RSA_PKCS_KEY_PAIR_GEN",
        s::CKM_EC_KEY_PAIR_GEN => "CKM_EC_KEY_PAIR_GEN",
        s::CKM_SHA224_HMAC => "CKM_SHA224_HMAC",
        s::CKM_SHA256_HMAC => "CKM_SHA256_HMAC",
        s::CKM_SHA384_HMAC => "CKM_SHA384_HMAC",
        s::CKM_SHA512_HMAC => "CKM_SHA512_HMAC",
        _ => return format!("{mechanism:#x}"),
    };
    format!("{n} ({mechanism:#x})")
}
