//! Entry points for coverage-guided fuzzing of every parser of input from the
//! other side of the air gap (`fuzz/`, see `docs/fuzzing.md`), also called by
//! `tests/fuzz_corpus.rs`, which replays the committed corpora on stable.
//!
//! Each takes arbitrary bytes, must never panic, and checks what a successful
//! parse promises (a panic here is a finding): a parser may refuse anything,
//! but what it accepts must hold its invariants.

use std::path::Path;

use crate::bundle::manifest::Manifest;
use crate::ceremony::attest::Payload;
use crate::ceremony::dsse::{self, Envelope};
use crate::ceremony::{file, policy::Policy, transcript};
use crate::kms::ImportParameters;
use crate::names::{CeremonyId, CustodianName, KeyLabel, TargetName};

/// A fuzz target: arbitrary bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// The fuzz targets of the air-gapped side, by name (as in
/// `fuzz/fuzz_targets/NAME.rs` and `fuzz/corpus/NAME/`).
pub const TARGETS: [(&str, Target); 8] = [
    ("import_params", import_params),
    ("ceremony_file", ceremony_file),
    ("policy", policy),
    ("manifest", manifest),
    ("transcript", transcript),
    ("dsse_envelope", dsse_envelope),
    ("attestation_payload", attestation_payload),
    ("names", names),
];

/// The bastion's fuzz targets (cargo feature `bastion`; in `fuzz/`, feature
/// `bastion` too).
#[cfg(feature = "bastion")]
pub const BASTION_TARGETS: [(&str, Target); 2] = [
    ("bastion_state", bastion_state),
    ("kms_answers", kms_answers),
];

/// The `byok-config-rule` function's fuzz target (cargo feature
/// `config-rule`; in `fuzz/`, feature `config-rule` too).
#[cfg(feature = "config-rule")]
pub const CONFIG_RULE_TARGETS: [(&str, Target); 1] = [("config_event", config_event)];

/// Every fuzz target this build has.
pub fn all_targets() -> Vec<(&'static str, Target)> {
    #[allow(unused_mut)]
    let mut all = TARGETS.to_vec();
    #[cfg(feature = "bastion")]
    all.extend(BASTION_TARGETS);
    #[cfg(feature = "config-rule")]
    all.extend(CONFIG_RULE_TARGETS);
    all
}

/// The event AWS Config sends the `byok-config-rule` function, read as far
/// as its first call to AWS: parameters, invoking event, and the resource
/// and encryption the audit's judge is given for a configuration item.
#[cfg(feature = "config-rule")]
pub fn config_event(data: &[u8]) {
    crate::bastion::fuzz::config_event(data)
}

/// The bastion's state files (receipts, parameters records, alias moves) as
/// its state directory reads them: what is accepted writes back and reads
/// back the same.
#[cfg(feature = "bastion")]
pub fn bastion_state(data: &[u8]) {
    crate::bastion::fuzz::bastion_state(data)
}

/// KMS's answers (DescribeKey, GenerateMac, GetPublicKey, Encrypt, Decrypt,
/// ListKeyRotations) through the SDK's deserializers into `verify`'s proof
/// and `prepare`'s key check: "proven" only when the answers tie the key to
/// the bundle, "importable" only for an EXTERNAL key of the spec.
#[cfg(feature = "bastion")]
pub fn kms_answers(data: &[u8]) {
    crate::bastion::fuzz::kms_answers(data)
}

fn fixed_now() -> time::OffsetDateTime {
    // Fixed, so a corpus file means the same thing on every run.
    time::macros::datetime!(2026-11-30 12:00 UTC)
}

/// `GetParametersForImport` output as the bastion saved it.
pub fn import_params(data: &[u8]) {
    let Ok(p) = ImportParameters::parse(data, fixed_now()) else {
        return;
    };
    assert!(
        [2048, 3072, 4096].contains(&p.wrapping_key_bits),
        "accepted a {}-bit wrapping key",
        p.wrapping_key_bits
    );
    assert!(!p.import_token.is_empty() && p.import_token.len() <= 6144);
    assert!(p.valid_to > fixed_now(), "accepted expired parameters");
    assert_eq!(
        p.file_sha256,
        <sha2::Sha256 as sha2::Digest>::digest(data).as_slice()
    );
}

/// A ceremony file's structure ([`file::parse_structure`]).
pub fn ceremony_file(data: &[u8]) {
    let Ok(f) = file::parse_structure(data) else {
        return;
    };
    assert!(!f.keys.is_empty());
    let mut labels = std::collections::BTreeSet::new();
    for k in &f.keys {
        assert!(labels.insert(k.label.clone()), "duplicate label accepted");
        assert!(!k.targets.is_empty());
        let dir = k.label.join_to(Path::new("OUT"));
        assert_eq!(dir.parent(), Some(Path::new("OUT")));
        for t in &k.targets {
            assert_eq!(t.name.join_to(&dir).parent(), Some(dir.as_path()));
        }
    }
}

/// A custodian policy.
pub fn policy(data: &[u8]) {
    let Ok(p) = Policy::parse(data) else {
        return;
    };
    assert!(p.threshold >= 1 && p.threshold <= p.custodians.len());
    for c in &p.custodians {
        assert!(p.by_keyid(&c.keyid).is_some());
    }
}

/// A bundle's `manifest.json` (as [`Manifest::read`] parses it).
pub fn manifest(data: &[u8]) {
    let Ok(m) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    let again: Manifest =
        serde_json::from_slice(&serde_json::to_vec(&m).expect("a manifest serializes"))
            .expect("a serialized manifest parses");
    assert_eq!(m, again);
}

/// A transcript: the chain verifier, and resume's decision on a torn last line.
pub fn transcript(data: &[u8]) {
    if let Ok(v) = transcript::verify_bytes(data) {
        assert!(!v.entries.is_empty());
        for (i, e) in v.entries.iter().enumerate() {
            assert_eq!(e.seq, i as u64);
            e.to_line()
                .expect("a typed entry that was read can be written");
        }
        assert!(data.ends_with(b"\n"));
        let _ = v.completion();
    }
    match transcript::torn_tail(data) {
        Ok(Some((keep, torn))) => {
            assert!(keep < data.len() && !data.ends_with(b"\n"));
            assert_eq!(keep + torn.bytes, data.len());
            assert!(
                !data[keep..].contains(&b'\n'),
                "cut more than the last line"
            );
            if keep > 0 {
                let kept =
                    transcript::verify_bytes(&data[..keep]).expect("what resume keeps verifies");
                assert_eq!(kept.entries.len(), torn.entries_kept);
            }
        }
        Ok(None) => assert!(data.is_empty() || data.ends_with(b"\n")),
        Err(_) => {}
    }
}

/// A DSSE envelope, as `ceremony verify` reads one (and its payload).
pub fn dsse_envelope(data: &[u8]) {
    let Ok(env) = serde_json::from_slice::<Envelope>(data) else {
        return;
    };
    let Ok(payload) = dsse::payload_bytes(&env) else {
        return;
    };
    let pae = dsse::pae(&env.payload_type, &payload);
    assert!(pae.len() > payload.len() + env.payload_type.len());
    attestation_payload(&payload);
    for s in &env.signatures {
        use base64::Engine as _;
        if let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(&s.sig) {
            if let Some(der) = dsse::ecdsa_raw_to_der(&sig) {
                assert!(der.len() >= 8);
            }
        }
    }
}

/// An attestation payload (inside a DSSE envelope).
pub fn attestation_payload(data: &[u8]) {
    let Ok(p) = serde_json::from_slice::<Payload>(data) else {
        return;
    };
    // The payload names the custodian whose file it must be in.
    let file = format!("{}.dsse.json", p.custodian);
    assert!(!file.contains('/'));
}

/// Path-safe names: whatever is accepted stays one directory level below its parent.
pub fn names(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("OUT");
    let checks: [(&str, Option<std::path::PathBuf>); 4] = [
        ("key label", KeyLabel::new(s).ok().map(|n| n.join_to(base))),
        ("target", TargetName::new(s).ok().map(|n| n.join_to(base))),
        (
            "custodian",
            CustodianName::new(s).ok().map(|n| n.join_to(base)),
        ),
        (
            "ceremony ID",
            CeremonyId::new(s).ok().map(|n| n.join_to(base)),
        ),
    ];
    for (kind, joined) in checks {
        if let Some(p) = joined {
            assert_eq!(p.parent(), Some(base), "{kind} {s:?} leaves its directory");
            assert_eq!(p.components().count(), 2, "{kind} {s:?}");
            assert!(s != "." && s != ".." && !s.contains(['/', '\\', '\0']));
        }
    }
}
