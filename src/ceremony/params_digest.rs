//! The parameters digest: one SHA-256 that commits to every wrapping key and
//! import token of a ceremony, so custodians confirm all of them at once with
//! a value that comes from the bastion, not from the media they check.
//!
//! The bastion prints it after `byok-bastion prepare --ceremony` (and
//! `byok-bastion params-digest --ceremony FILE` computes it from the bastion's
//! own copy); `byok-airgap ceremony run` computes it from the files on the
//! media and refuses to start until the two agree.
//!
//! Canonical text (UTF-8), hashed with SHA-256:
//!
//! ```text
//! byok-ceremony/parameters-digest/v1\n
//! LABEL/TARGET KEY_ARN REGION WRAPPING_KEY_SHA256 IMPORT_TOKEN_SHA256\n   (one line per target)
//! ```
//!
//! Lines are sorted by `LABEL/TARGET` (byte order); fields are separated by
//! one space; hashes are lowercase hex. `KEY_ARN` is the parameters' `KeyId`;
//! `REGION` is the parameters' `Region` if present, else the ARN's Region
//! field, else `-`. No field can contain a space or a line end: labels and
//! target names are path-safe names, and the parser refuses such key IDs.

use sha2::{Digest, Sha256};

use crate::fingerprint::Fingerprint;
use crate::kms::ImportParameters;
use crate::names::{KeyLabel, TargetName};

/// The first line of the canonical text.
pub const FORMAT: &str = "byok-ceremony/parameters-digest/v1";

/// One target's line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DigestLine {
    /// `LABEL/TARGET`.
    pub bundle: String,
    /// The KMS key's ARN (the parameters' `KeyId`).
    pub key_arn: String,
    /// The Region.
    pub region: String,
    /// SHA-256 of the wrapping public key (DER), hex.
    pub wrapping_key_sha256: String,
    /// SHA-256 of the import token, hex.
    pub import_token_sha256: String,
}

impl DigestLine {
    /// The line for one target's parameters.
    pub fn new(label: &KeyLabel, target: &TargetName, params: &ImportParameters) -> Self {
        let region = params
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| {
                params
                    .key_id
                    .split(':')
                    .nth(3)
                    .filter(|r| !r.is_empty())
                    .map(String::from)
            })
            .unwrap_or_else(|| "-".into());
        DigestLine {
            bundle: format!("{label}/{target}"),
            key_arn: params.key_id.clone(),
            region: clean(&region),
            wrapping_key_sha256: hex::encode(params.wrapping_key_sha256()),
            import_token_sha256: hex::encode(params.import_token_sha256()),
        }
    }
}

/// Whitespace cannot appear in a field (it would make two lists hash alike).
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// The canonical text of `lines` (see the module docs).
pub fn canonical_text(lines: &[DigestLine]) -> String {
    let mut sorted: Vec<&DigestLine> = lines.iter().collect();
    sorted.sort_by(|a, b| a.bundle.as_bytes().cmp(b.bundle.as_bytes()));
    let mut s = format!("{FORMAT}\n");
    for l in sorted {
        s += &format!(
            "{} {} {} {} {}\n",
            l.bundle,
            clean(&l.key_arn),
            l.region,
            l.wrapping_key_sha256,
            l.import_token_sha256
        );
    }
    s
}

/// The parameters digest of `lines`.
pub fn digest(lines: &[DigestLine]) -> Fingerprint {
    Fingerprint(Sha256::digest(canonical_text(lines).as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(bundle: &str, wk: char) -> DigestLine {
        DigestLine {
            bundle: bundle.into(),
            key_arn: format!("arn:aws:kms:eu-west-1:111122223333:key/{bundle}"),
            region: "eu-west-1".into(),
            wrapping_key_sha256: wk.to_string().repeat(64),
            import_token_sha256: "b".repeat(64),
        }
    }

    #[test]
    fn order_independent_and_sensitive_to_every_field() {
        let a = vec![line("k1/t1", 'a'), line("k2/t1", 'c')];
        let b = vec![a[1].clone(), a[0].clone()];
        assert_eq!(digest(&a), digest(&b));
        let text = canonical_text(&a);
        assert!(text.starts_with("byok-ceremony/parameters-digest/v1\nk1/t1 arn:aws:kms:eu-west-1:111122223333:key/k1/t1 eu-west-1 aaaa"));
        assert_eq!(text.lines().count(), 3);
        let base = digest(&a);
        for f in 0..5 {
            let mut changed = a.clone();
            let l = &mut changed[1];
            match f {
                0 => l.bundle = "k2/t2".into(),
                1 => l.key_arn.push('x'),
                2 => l.region = "us-east-1".into(),
                3 => l.wrapping_key_sha256 = "d".repeat(64),
                _ => l.import_token_sha256 = "e".repeat(64),
            }
            assert_ne!(digest(&changed), base, "field {f}");
        }
        // Dropping a target changes it too.
        assert_ne!(digest(&a[..1]), base);
    }

    #[test]
    fn known_answer() {
        // An auditor reimplementing docs/formats.md must get this value.
        let d = digest(&[line("k1/t1", 'a')]);
        let text = "byok-ceremony/parameters-digest/v1\nk1/t1 arn:aws:kms:eu-west-1:111122223333:key/k1/t1 eu-west-1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n";
        assert_eq!(d.hex(), hex::encode(Sha256::digest(text.as_bytes())));
    }
}
