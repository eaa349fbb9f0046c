//! The bastion's fuzz entry points, called through [`crate::fuzzing`]: its
//! state records (receipts decide what is sent again and what `verify` calls
//! proven) and KMS's answers to the calls whose answers it acts on.
//!
//! Like every entry point there, each takes arbitrary bytes, must never
//! panic, and asserts what an accepted input promises, using an oracle of
//! its own (`serde_json` over the same bytes) rather than the code under test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::canned::{self, Answer, Answers};
use super::prove::{prove_manifest, Proof, Verdict};
use super::state::{parse_record, AliasMoveRecord, ParamsRecord, Receipt, StateRecord};
use crate::bundle::manifest::Manifest;
use crate::kms::{KeyFamily, KeySpec, WrappingAlgorithm};

/// A state file as `StateDir` reads it: as a receipt, a parameters record
/// and an alias move. What is accepted writes back and reads back the same.
pub(crate) fn bastion_state(data: &[u8]) {
    if let Ok(r) = parse_record::<Receipt>(PathBuf::from("receipt.json"), data) {
        writes_back(&r);
    }
    if let Ok(r) = parse_record::<ParamsRecord>(PathBuf::from("params.json"), data) {
        writes_back(&r);
    }
    if let Ok(r) = parse_record::<AliasMoveRecord>(PathBuf::from("alias.json"), data) {
        writes_back(&r);
    }
}

fn writes_back<T: StateRecord + Serialize + PartialEq + std::fmt::Debug>(record: &T) {
    let Ok(bytes) = serde_json::to_vec_pretty(record) else {
        panic!("an accepted record does not serialize: {record:?}");
    };
    if bytes.len() > 64 * 1024 {
        return;
    }
    match parse_record::<T>(PathBuf::from("again.json"), &bytes) {
        Ok(again) => assert_eq!(&again, record, "a record changed through write and read"),
        Err(e) => panic!("the bastion would write a record it refuses to read: {e}"),
    }
}

/// The KMS operations whose answers `kms_answers` fills, in the order the
/// input's NUL-separated parts are given to them.
const OPERATIONS: [&str; 6] = [
    "DescribeKey",
    "GenerateMac",
    "GetPublicKey",
    "Encrypt",
    "Decrypt",
    "ListKeyRotations",
];

/// The KeyMaterialId in the receipts `kms_answers` proves against.
const IMPORTED: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// KMS answers as bytes: the first byte chooses the case (the bundle's key
/// family and this bastion's receipt, or `prepare`'s DescribeKey check), the
/// rest is split at NUL bytes into the HTTP bodies of [`OPERATIONS`] (a body
/// starting with `!` is sent with status 400). The answers go through the
/// SDK's own deserializers, then through `verify`'s decision
/// ([`prove_manifest`]) or `prepare`'s key check. Asserted: "proven" only
/// when KMS's answer, as an independent JSON parse reads it, ties the key to
/// the bundle (invariant 7); a key is importable only when KMS said EXTERNAL
/// and the spec.
pub(crate) fn kms_answers(data: &[u8]) {
    let Some((case, table, decision)) = decide(data) else {
        return;
    };
    let json = |op: &str| -> Option<Value> {
        let a = table.get(op)?;
        (a.status == 200)
            .then(|| serde_json::from_slice(&a.body).ok())
            .flatten()
    };
    match decision {
        Decision::Proof(proof) => {
            let m = manifest_of(case % 4);
            let receipt = receipt_of(case / 4 % 3, &m);
            proof_holds(&proof, &m, receipt.as_ref(), &json);
        }
        Decision::Importable(arn, spec) => importable_holds(&arn, spec, expected_spec(case), &json),
        Decision::Refused(why) => assert!(!why.is_empty(), "a refusal that says nothing"),
    }
}

/// What the bastion decided on the answers.
#[derive(Debug)]
enum Decision {
    /// `verify`'s proof.
    Proof(Proof),
    /// `prepare`'s key check passed: the key's ARN and spec.
    Importable(String, KeySpec),
    /// Either refused, with the message.
    Refused(String),
}

/// Split `data` into the case and the answers, and run the case.
fn decide(data: &[u8]) -> Option<(u8, BTreeMap<String, Answer>, Decision)> {
    let (&case, rest) = data.split_first()?;
    let mut parts = rest.split(|b| *b == 0);
    let mut table = BTreeMap::new();
    for op in OPERATIONS {
        if let Some(body) = parts.next() {
            let answer = match body.strip_prefix(b"!") {
                Some(error) => Answer {
                    status: 400,
                    body: error.to_vec(),
                },
                None => Answer {
                    status: 200,
                    body: body.to_vec(),
                },
            };
            table.insert(op.to_string(), answer);
        }
    }
    let bastion = canned::bastion(Answers::new(table.clone()));
    let decision = if case % 4 == 3 {
        let checked = runtime().block_on(super::prepare::importable_key(
            &bastion,
            &asked_key(),
            WrappingAlgorithm::RsaesOaepSha256,
            "RSA_2048",
            expected_spec(case),
        ));
        match checked {
            Ok((arn, spec)) => Decision::Importable(arn, spec),
            Err(e) => Decision::Refused(e.to_string()),
        }
    } else {
        let m = manifest_of(case % 4);
        let receipt = receipt_of(case / 4 % 3, &m);
        match runtime().block_on(prove_manifest(&bastion, &m, receipt)) {
            Ok(proof) => Decision::Proof(proof),
            Err(e) => Decision::Refused(e.to_string()),
        }
    };
    Some((case, table, decision))
}

/// The spec `prepare`'s check expects in case `case`, if any.
fn expected_spec(case: u8) -> Option<KeySpec> {
    (case & 0x80 != 0).then_some(KeySpec::SymmetricDefault)
}

/// An importable key is EXTERNAL and of KMS's spec, as KMS said.
fn importable_holds(
    arn: &str,
    spec: KeySpec,
    expect: Option<KeySpec>,
    json: &dyn Fn(&str) -> Option<Value>,
) {
    let Some(meta) = json("DescribeKey").and_then(|v| v.get("KeyMetadata").cloned()) else {
        return;
    };
    assert_eq!(
        meta["Origin"], "EXTERNAL",
        "a key KMS did not call EXTERNAL was importable"
    );
    assert_eq!(meta["KeySpec"], spec.as_str(), "the spec is not KMS's");
    if let Some(e) = expect {
        assert_eq!(
            spec, e,
            "a key of another spec than expected was importable"
        );
    }
    assert_eq!(meta["Arn"].as_str(), Some(arn), "the ARN is not KMS's");
    assert_eq!(
        arn,
        asked_key(),
        "importable, but KMS answered for another key"
    );
}

/// The key `prepare`'s check asks about: the AES seed's.
fn asked_key() -> String {
    manifest_of(1).key_id
}

/// Whether the proof's "proven" is backed by KMS's answers.
fn proof_holds(
    proof: &Proof,
    m: &Manifest,
    receipt: Option<&Receipt>,
    json: &dyn Fn(&str) -> Option<Value>,
) {
    assert_eq!(proof.key_arn, m.key_id);
    if proof.verdict != Verdict::Proven {
        return;
    }
    let ours = receipt
        .filter(|r| r.key_arn == m.key_id)
        .and_then(|r| r.key_material_id.as_deref());
    let current = json("DescribeKey").and_then(|v| {
        v["KeyMetadata"]["CurrentKeyMaterialId"]
            .as_str()
            .map(String::from)
    });
    let pending = |id: &str| {
        json("ListKeyRotations").is_some_and(|v| {
            v["Rotations"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| {
                    r["KeyMaterialId"] == id && r["KeyMaterialState"] == "PENDING_ROTATION"
                })
            })
        })
    };
    if let (Some(current), Some(ours)) = (&current, ours) {
        assert!(
            current == ours || pending(ours),
            "proven although KMS's current material {current} is not this bastion's {ours}"
        );
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).ok();
    match m.key_spec.family() {
        KeyFamily::Aes => {
            let ours = ours.unwrap_or_else(|| panic!("an AES key proven without a receipt"));
            assert!(
                current.as_deref() == Some(ours) || pending(ours),
                "an AES key proven without KMS naming this bastion's material"
            );
        }
        KeyFamily::Hmac => {
            let Some(check) = &m.hmac_check else {
                panic!("an HMAC key proven without the HSM's HMAC");
            };
            let Some(mac) = json("GenerateMac").and_then(|v| v["Mac"].as_str().and_then(b64))
            else {
                return;
            };
            assert_eq!(
                hex::encode(mac),
                check.mac_hex,
                "proven although KMS's MAC is not the HSM's"
            );
        }
        KeyFamily::Rsa | KeyFamily::Ec => {
            let want = m.public_key.as_deref().and_then(b64);
            let Some(got) =
                json("GetPublicKey").and_then(|v| v["PublicKey"].as_str().and_then(b64))
            else {
                return;
            };
            assert_eq!(
                Some(got),
                want,
                "proven although KMS's public key is not the HSM's"
            );
        }
    }
}

/// The manifest of a bundle of family `which` (0 HMAC, 1 AES, 2 RSA), from
/// the committed seeds of the `manifest` target.
fn manifest_of(which: u8) -> Manifest {
    static MANIFESTS: OnceLock<[Manifest; 3]> = OnceLock::new();
    let all = MANIFESTS.get_or_init(|| {
        let hmac: Manifest =
            serde_json::from_str(include_str!("../../fuzz/corpus/manifest/seed-hmac.json"))
                .expect("the committed HMAC seed is a manifest");
        let aes: Manifest =
            serde_json::from_str(include_str!("../../fuzz/corpus/manifest/seed-aes.json"))
                .expect("the committed AES seed is a manifest");
        let mut rsa = aes.clone();
        rsa.key_spec = KeySpec::Rsa2048;
        rsa.kcv = None;
        rsa.public_key =
            Some(base64::engine::general_purpose::STANDARD.encode(b"the HSM's public key DER"));
        [hmac, aes, rsa]
    });
    all[usize::from(which % 3)].clone()
}

/// This bastion's receipt for the bundle: none (0), one with the KeyMaterialId
/// KMS returned (1), one without (2).
fn receipt_of(which: u8, m: &Manifest) -> Option<Receipt> {
    (which != 0).then(|| Receipt {
        account: Some("111122223333".into()),
        region: "eu-west-1".into(),
        key_arn: m.key_id.clone(),
        key_material_id: (which == 1).then(|| IMPORTED.to_string()),
        request_id: None,
        import_type: "DEFAULT".into(),
        how: "imported".into(),
        imported_at: "2026-12-01T00:00:00Z".into(),
        ceremony_id: "fuzz".into(),
        target: "key/kms".into(),
        transcript_sha256: "0".repeat(64),
        signers: vec!["alice".into()],
        encrypted_key_material_sha256: m.encrypted_key_material_sha256.clone(),
        retries: 0,
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds")
    })
}

/// The event AWS Config sends the `byok-config-rule` function, as
/// `ConfigRule::handle` reads it before its first call to AWS: the outer
/// event, the rule's parameters, the invoking event and, for an item of a
/// judged type, the resource and encryption the audit's judge is given.
/// What is accepted names the resource the invoking event names (oracle:
/// `serde_json` over that string), and its evaluation can be sent.
#[cfg(feature = "config-rule")]
pub(crate) fn config_event(data: &[u8]) {
    use super::config_rule::{
        resource_of, resource_type, ConfigEvent, Evaluation, Invocation, RuleParameters,
        MAX_ANNOTATION_CHARS,
    };
    let Ok(payload) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(event) = ConfigEvent::parse(payload) else {
        return;
    };
    if let Ok(p) = RuleParameters::parse(event.rule_parameters.as_deref()) {
        assert!((0..=36500).contains(&p.max_age_days), "{p:?}");
    }
    let (item, member) = match Invocation::parse(&event.invoking_event) {
        Ok(Invocation::Change(item)) => (item, "configurationItem"),
        Ok(Invocation::Oversized(item)) => (item, "configurationItemSummary"),
        Ok(Invocation::Scheduled { .. }) | Err(_) => return,
    };
    let oracle: Value =
        serde_json::from_str(&event.invoking_event).expect("an accepted invoking event is JSON");
    assert_eq!(
        oracle[member]["resourceId"].as_str(),
        Some(item.resource_id.as_str()),
        "the item names another resource than the event"
    );
    assert_eq!(
        oracle[member]["resourceType"].as_str(),
        Some(item.resource_type.as_str())
    );
    let why = "x".repeat(2 * MAX_ANNOTATION_CHARS);
    let na = Evaluation::not_applicable(&item, &why);
    assert!(na.annotation.chars().count() <= MAX_ANNOTATION_CHARS);
    assert!(
        na.to_sdk().is_ok(),
        "an evaluation of an accepted item can be sent"
    );
    if let Some(kind) = resource_type(&item.resource_type) {
        let r = resource_of(kind, &item);
        assert_eq!(r.config_id.as_deref(), Some(item.resource_id.as_str()));
        assert_eq!(r.name, item.name());
        assert_eq!(r.region, item.region);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(target: &str, name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target)
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Each `config_event` seed is an event the rule accepts, of the kind
    /// its name says, so the harness gets past the parsers to the checks.
    #[cfg(feature = "config-rule")]
    #[test]
    fn config_event_seeds_reach_the_checks() {
        use crate::bastion::config_rule::{resource_type, ConfigEvent, Invocation};
        for (name, kind, judged) in [
            ("seed-change-s3-bucket", "change", true),
            ("seed-change-dynamodb-table", "change", true),
            ("seed-change-rds-dbinstance", "change", true),
            ("seed-change-rds-dbcluster", "change", true),
            ("seed-change-deleted", "change", true),
            ("seed-oversized", "oversized", true),
            ("seed-scheduled", "scheduled", false),
        ] {
            let data = seed("config_event", name);
            let event = ConfigEvent::parse(serde_json::from_slice(&data).unwrap()).unwrap();
            let (got, item) = match Invocation::parse(&event.invoking_event).unwrap() {
                Invocation::Change(i) => ("change", Some(i)),
                Invocation::Oversized(i) => ("oversized", Some(i)),
                Invocation::Scheduled { .. } => ("scheduled", None),
            };
            assert_eq!(got, kind, "{name}");
            let is_judged = item.is_some_and(|i| resource_type(&i.resource_type).is_some());
            assert_eq!(is_judged, judged, "{name}");
            config_event(&data);
        }
    }

    /// The harness reaches each decision the seeds were written for: the
    /// canned client answers, the SDK parses, and the oracle has work to do.
    #[test]
    fn each_seed_reaches_its_decision() {
        let cases = [
            ("hmac-proven", "proven"),
            ("hmac-wrong-mac", "refused: GenerateMac gave"),
            ("hmac-receipt-current-differs", "usable-not-proven"),
            ("aes-no-receipt", "usable-not-proven"),
            ("aes-proven-current", "proven"),
            ("aes-proven-pending", "proven"),
            ("aes-differs", "usable-not-proven"),
            ("aes-rotations-denied", "usable-not-proven"),
            ("aes-receipt-without-id", "usable-not-proven"),
            ("aes-round-trip-differs", "refused: round trip failed"),
            ("rsa-proven", "proven"),
            ("rsa-other-key", "refused: GetPublicKey differs"),
            ("importable", "importable SYMMETRIC_DEFAULT"),
            ("importable-expect-spec", "importable SYMMETRIC_DEFAULT"),
            ("not-external", "refused: Origin EXTERNAL"),
            ("wrong-spec", "refused: the ceremony file says"),
            ("describe-denied", "refused: AccessDenied"),
            ("describe-no-arn", "refused: answered for \"\""),
            ("describe-other-key", "refused: not that key"),
        ];
        for (name, want) in cases {
            let data = seed("kms_answers", &format!("seed-{name}"));
            let (_, _, decision) = decide(&data).expect("a seed has a case byte");
            let got = match &decision {
                Decision::Proof(p) if p.verdict == Verdict::Proven => "proven".to_string(),
                Decision::Proof(_) => "usable-not-proven".to_string(),
                Decision::Importable(_, spec) => format!("importable {}", spec.as_str()),
                Decision::Refused(e) => format!("refused: {e}"),
            };
            let (kind, detail) = want.split_once(": ").unwrap_or((want, ""));
            assert!(
                got.starts_with(kind) && got.contains(detail),
                "{name}: wanted {want}, got {got}"
            );
            kms_answers(&data);
        }
    }

    #[test]
    fn state_seeds_are_read_as_the_bastion_reads_them() {
        let read =
            |name: &str| parse_record::<Receipt>(PathBuf::from(name), &seed("bastion_state", name));
        assert!(read("seed-receipt.json").is_ok());
        assert!(read("seed-receipt-reconciled.json").is_ok());
        assert!(read("seed-receipt-old-no-how.json").is_ok());
        let bad = read("seed-receipt-bad-hash.json").unwrap_err().to_string();
        assert!(
            bad.contains("transcript_sha256 is not a lowercase hex SHA-256"),
            "{bad}"
        );
        let params = seed("bastion_state", "seed-params.json");
        assert!(parse_record::<ParamsRecord>(PathBuf::from("p"), &params).is_ok());
        let alias = seed("bastion_state", "seed-alias.json");
        assert!(parse_record::<AliasMoveRecord>(PathBuf::from("a"), &alias).is_ok());
        assert!(parse_record::<Receipt>(PathBuf::from("a"), &alias).is_err());
        let big = vec![b' '; 64 * 1024 + 1];
        let e = parse_record::<Receipt>(PathBuf::from("big"), &big).unwrap_err();
        assert!(e.to_string().contains("larger than 64 KiB"), "{e}");
    }
}
