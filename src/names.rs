//! Names that come from untrusted files and become path components: key
//! labels, target names, ceremony IDs and custodian names.
//!
//! Each is a newtype validated when it is parsed, so code that joins one onto
//! a directory cannot be handed `..`, `.`, a separator or a control
//! character. The rule, the same for all four (docs/formats.md):
//!
//! * 1 to [`MAX_LEN`] characters ([`CeremonyId`]: [`MAX_CEREMONY_ID_LEN`]);
//! * only ASCII letters, digits, `-`, `_` and `.`;
//! * the first character is a letter or a digit (so never `.`, `..`, a hidden
//!   file or something that reads as a command-line flag).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest key label, target name or custodian name.
pub const MAX_LEN: usize = 64;
/// Longest ceremony ID.
pub const MAX_CEREMONY_ID_LEN: usize = 100;

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is not allowed: {why}. Use 1-{max} ASCII letters, digits, '-', '_' or '.', starting with a letter or digit")]
pub struct NameError {
    /// What kind of name (e.g. "key label").
    pub kind: &'static str,
    /// The refused value (escaped when shown).
    pub value: String,
    /// The rule it breaks.
    pub why: &'static str,
    /// The length limit for this kind.
    pub max: usize,
}

fn validate(kind: &'static str, s: &str, max: usize) -> Result<(), NameError> {
    let err = |why| NameError {
        kind,
        value: s.chars().take(max + 8).collect(),
        why,
        max,
    };
    let first = s.chars().next().ok_or_else(|| err("it is empty"))?;
    if s.len() > max {
        return Err(err("it is too long"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(err("it contains a control character"));
    }
    if s.contains(['/', '\\']) {
        return Err(err("it contains a path separator"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(err("it contains a character outside the allowed set"));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(err("it does not start with a letter or digit"));
    }
    Ok(())
}

macro_rules! path_safe_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What this kind of name is called in messages.
            pub const KIND: &'static str = $kind;

            /// Validate `s` (see the module docs for the rule).
            pub fn new(s: &str) -> Result<Self, NameError> {
                validate($kind, s, $max)?;
                Ok(Self(s.to_string()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// `dir/NAME`: always a direct child of `dir`.
            pub fn join_to(&self, dir: &Path) -> PathBuf {
                dir.join(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                validate($kind, &s, $max)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Shown as the quoted string, as messages quote names.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

path_safe_name!(
    /// A key's `CKA_LABEL` in a ceremony, and the name of its directory under `--out`.
    KeyLabel,
    "key label",
    MAX_LEN
);
path_safe_name!(
    /// A wrap target's name, and the name of its bundle directory under the key's.
    TargetName,
    "target name",
    MAX_LEN
);
path_safe_name!(
    /// A ceremony's ID, recorded in the transcript and attestations.
    CeremonyId,
    "ceremony ID",
    MAX_CEREMONY_ID_LEN
);
path_safe_name!(
    /// A custodian's name in the policy; names the attestation file `NAME.dsse.json`.
    CustodianName,
    "custodian name",
    MAX_LEN
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_could_leave_a_directory() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/abs",
            "a\\b",
            ".hidden",
            "-flag",
            "tab\there",
            "nl\n",
            "caf\u{e9}",
            "sp ace",
            &"x".repeat(65),
        ] {
            let e = KeyLabel::new(bad).unwrap_err();
            assert_eq!(e.kind, "key label", "{bad:?}");
            assert!(TargetName::new(bad).is_err(), "{bad:?}");
            assert!(CustodianName::new(bad).is_err(), "{bad:?}");
            assert!(
                serde_json::from_str::<KeyLabel>(&serde_json::to_string(bad).unwrap()).is_err()
            );
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for good in [
            "a",
            "prod-s3-2026-11",
            "eu-west-1",
            "k.v_2",
            &"x".repeat(64),
        ] {
            let n = KeyLabel::new(good).unwrap();
            assert_eq!(n.as_str(), good);
            assert_eq!(n.join_to(Path::new("out")), Path::new("out").join(good));
        }
        assert!(CeremonyId::new(&"c".repeat(100)).is_ok());
        assert!(CeremonyId::new(&"c".repeat(101)).is_err());
    }

    #[test]
    fn messages_say_why_and_what_is_allowed() {
        let e = TargetName::new("..").unwrap_err().to_string();
        assert!(e.contains("target name \"..\""), "{e}");
        assert!(e.contains("does not start with a letter or digit"), "{e}");
        assert!(e.contains("1-64 ASCII letters"), "{e}");
        let e = KeyLabel::new("a\u{7}b").unwrap_err().to_string();
        assert!(e.contains("control character"), "{e}");
    }
}
