//! SHA-256 fingerprints, shown to people and compared with what they type.

use sha2::{Digest, Sha256};

/// A SHA-256 digest shown as a fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Fingerprint of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Fingerprint(Sha256::digest(bytes).into())
    }

    /// Lowercase hex, 64 characters.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Hex in groups of four, two lines of eight groups, for reading aloud.
    pub fn grouped(&self) -> String {
        let hex = self.hex();
        let groups: Vec<&str> = (0..16).map(|i| &hex[i * 4..i * 4 + 4]).collect();
        format!("{}\n{}", groups[..8].join(" "), groups[8..].join(" "))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Normalize a typed or pasted fingerprint to 64 lowercase hex characters, or
/// `None` when it is not one.
pub(crate) fn normalize(typed: &str) -> Option<String> {
    let cleaned: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (cleaned.len() == 64 && cleaned.chars().all(|c| c.is_ascii_hexdigit())).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_and_normalizing() {
        let fp = Fingerprint::of(b"abc");
        assert_eq!(
            fp.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            fp.grouped(),
            "ba78 16bf 8f01 cfea 4141 40de 5dae 2223\nb003 61a3 9617 7a9c b410 ff61 f200 15ad"
        );
        // What people type is normalized (case, spaces, colons, dashes ignored)
        // before it is compared with the fingerprint.
        let hex = Some(fp.hex());
        assert_eq!(normalize(&fp.grouped().to_uppercase()), hex);
        assert_eq!(
            normalize("BA:78:16:bf 8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            hex
        );
        assert_eq!(normalize("ba7816bf"), None);
        assert_eq!(normalize(&"g".repeat(64)), None);
        assert_ne!(normalize(&fp.hex().replace("ba78", "ba79")), hex);
    }
}
