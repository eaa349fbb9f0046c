//! The custodian policy: who may attest a ceremony and how many must.
//!
//! ```json
//! {
//!   "format": "byok-ceremony/custodian-policy/v1",
//!   "threshold": 2,
//!   "custodians": [
//!     { "name": "alice", "public_key": "<base64 DER SubjectPublicKeyInfo>" }
//!   ]
//! }
//! ```
//!
//! The bastion and auditors verify with *their own* copy of the policy, never
//! with keys carried next to the signatures.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::dsse::{keyid, CustodianKey, KeyError};
use crate::media::{self, MediaReadError};
use crate::names::{CustodianName, NameError};

/// The policy format tag.
pub const FORMAT: &str = "byok-ceremony/custodian-policy/v1";

/// One custodian as written in the policy file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodianEntry {
    /// Name, as custodians sign with `--custodian NAME`.
    pub name: CustodianName,
    /// Base64 DER SubjectPublicKeyInfo of the custodian's signing key.
    pub public_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    public_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    format: String,
    threshold: usize,
    custodians: Vec<RawEntry>,
}

/// A custodian with a parsed key.
#[derive(Clone, Debug)]
pub struct Custodian {
    /// Name.
    pub name: CustodianName,
    /// DSSE key ID (SHA-256 of the SPKI DER, hex).
    pub keyid: String,
    /// The verifying key.
    pub key: CustodianKey,
}

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// How many distinct custodians must sign.
    pub threshold: usize,
    /// The custodians.
    pub custodians: Vec<Custodian>,
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Could not read it, or it is larger than any policy.
    #[error("custodian policy: {0}")]
    Read(#[from] MediaReadError),
    /// Not policy JSON.
    #[error("the policy is not valid policy JSON ({0}); unknown and duplicate fields are refused")]
    Json(#[from] serde_json::Error),
    /// Wrong format tag.
    #[error("the policy format is {0:?}, expected {FORMAT:?}")]
    Format(String),
    /// Threshold out of range.
    #[error(
        "threshold {threshold} is impossible with {count} custodians; it must be 1 to {count}"
    )]
    Threshold {
        /// Given threshold.
        threshold: usize,
        /// Number of custodians.
        count: usize,
    },
    /// A custodian name breaks the name rule.
    #[error("the policy lists a custodian whose name is refused: {0}")]
    Name(#[from] NameError),
    /// A custodian name is listed twice.
    #[error("custodian \"{0}\" is listed twice in the policy; each custodian appears once")]
    DuplicateName(CustodianName),
    /// Key not usable.
    #[error("the key of custodian \"{name}\" is refused: {source}")]
    Key {
        /// The custodian.
        name: CustodianName,
        /// Why.
        source: KeyError,
    },
    /// Two custodians share a key.
    #[error("custodians \"{0}\" and \"{1}\" have the same key; each custodian needs their own")]
    SharedKey(CustodianName, CustodianName),
}

impl Policy {
    /// Parse and validate policy JSON.
    pub fn parse(bytes: &[u8]) -> Result<Self, PolicyError> {
        let raw: RawPolicy = serde_json::from_slice(bytes)?;
        if raw.format != FORMAT {
            return Err(PolicyError::Format(raw.format));
        }
        let count = raw.custodians.len();
        if raw.threshold == 0 || raw.threshold > count {
            return Err(PolicyError::Threshold {
                threshold: raw.threshold,
                count,
            });
        }
        let mut names = BTreeSet::new();
        let mut custodians: Vec<Custodian> = Vec::new();
        for raw_entry in raw.custodians {
            let c = CustodianEntry {
                name: CustodianName::new(&raw_entry.name)?,
                public_key: raw_entry.public_key,
            };
            if !names.insert(c.name.clone()) {
                return Err(PolicyError::DuplicateName(c.name));
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(c.public_key.trim())
                .map_err(|e| PolicyError::Key {
                    name: c.name.clone(),
                    source: KeyError::Unsupported(format!("not base64: {e}")),
                })?;
            let key = CustodianKey::from_spki_der(&der).map_err(|source| PolicyError::Key {
                name: c.name.clone(),
                source,
            })?;
            let id = keyid(&der);
            if let Some(other) = custodians.iter().find(|o| o.keyid == id) {
                return Err(PolicyError::SharedKey(other.name.clone(), c.name));
            }
            custodians.push(Custodian {
                name: c.name,
                keyid: id,
                key,
            });
        }
        Ok(Policy {
            threshold: raw.threshold,
            custodians,
        })
    }

    /// Read (at most `media::MAX_POLICY` bytes) and validate a policy file.
    pub fn read(path: &Path) -> Result<Self, PolicyError> {
        let bytes = media::read_bounded(path, "custodian policy", media::MAX_POLICY)?;
        Self::parse(&bytes)
    }

    /// The custodian with this key ID.
    pub fn by_keyid(&self, keyid: &str) -> Option<&Custodian> {
        self.custodians.iter().find(|c| c.keyid == keyid)
    }
}
