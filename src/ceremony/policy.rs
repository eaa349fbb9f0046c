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

/// The policy format tag.
pub const FORMAT: &str = "byok-ceremony/custodian-policy/v1";

/// One custodian as written in the policy file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodianEntry {
    /// Name, as custodians sign with `--custodian NAME`.
    pub name: String,
    /// Base64 DER SubjectPublicKeyInfo of the custodian's signing key.
    pub public_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    format: String,
    threshold: usize,
    custodians: Vec<CustodianEntry>,
}

/// A custodian with a parsed key.
#[derive(Clone, Debug)]
pub struct Custodian {
    /// Name.
    pub name: String,
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
    /// Could not read it.
    #[error("cannot read the policy {0}: {1}")]
    Read(String, std::io::Error),
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
    /// Bad or duplicate name.
    #[error("custodian name {0:?} is empty, not simple (letters, digits, '-', '_', '.') or listed twice")]
    Name(String),
    /// Key not usable.
    #[error("the key of custodian {name:?} is refused: {source}")]
    Key {
        /// The custodian.
        name: String,
        /// Why.
        source: KeyError,
    },
    /// Two custodians share a key.
    #[error("custodians {0:?} and {1:?} have the same key; each custodian needs their own")]
    SharedKey(String, String),
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
        for c in raw.custodians {
            let simple = !c.name.is_empty()
                && c.name.len() <= 64
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if !simple || !names.insert(c.name.clone()) {
                return Err(PolicyError::Name(c.name));
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

    /// Read and validate a policy file.
    pub fn read(path: &Path) -> Result<Self, PolicyError> {
        let bytes =
            std::fs::read(path).map_err(|e| PolicyError::Read(path.display().to_string(), e))?;
        Self::parse(&bytes)
    }

    /// The custodian with this key ID.
    pub fn by_keyid(&self, keyid: &str) -> Option<&Custodian> {
        self.custodians.iter().find(|c| c.keyid == keyid)
    }
}
