//! Custodian keys on their own tokens, DSSE attestations over a wrap's
//! output directory, and verification against an M-of-N policy, with a
//! tamper corpus.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

struct Custodian {
    name: &'static str,
    token: SoftHsm,
}

impl Custodian {
    fn new(name: &'static str, key_type: &str) -> (Self, serde_json::Value) {
        let token = SoftHsm::new(&format!("{name}-card"));
        let mut args = vec!["custodian".to_string(), "init".into()];
        args.extend(token.hsm_args());
        args.extend(
            [
                "--name",
                name,
                "--key-label",
                &format!("custodian-{name}"),
                "--key-type",
                key_type,
                "--json",
            ]
            .map(String::from),
        );
        let o = run(token.airgap().args(args));
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (Custodian { name, token }, v["entry"].clone())
    }

    fn sign(&self, dir: &Path) -> std::process::Output {
        let mut args = vec![
            "ceremony".to_string(),
            "sign".into(),
            dir.to_str().unwrap().into(),
        ];
        args.extend(self.token.hsm_args());
        args.extend(
            [
                "--custodian",
                self.name,
                "--key-label",
                &format!("custodian-{}", self.name),
                "--yes",
            ]
            .map(String::from),
        );
        run(self.token.airgap().args(args))
    }
}

fn verify(dir: &Path, policy: &Path) -> std::process::Output {
    run(Command::new(env!("CARGO_BIN_EXE_byok-airgap")).args([
        "ceremony",
        "verify",
        dir.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]))
}

fn fails_with(dir: &Path, policy: &Path, needle: &str) {
    let o = verify(dir, policy);
    assert!(
        !o.status.success(),
        "expected verification to fail with {needle:?}"
    );
    assert!(
        stderr(&o).contains(needle),
        "expected {needle:?} in:\n{}",
        stderr(&o)
    );
}

struct Setup {
    hsm: SoftHsm,
    out: PathBuf,
    policy: PathBuf,
    custodians: Vec<Custodian>,
    outsider: Custodian,
}

fn setup() -> Setup {
    let hsm = SoftHsm::new("ceremony");
    let kms = FakeKms::new(2048);
    wrap_ok(&hsm, &kms, "HMAC_256", "RSAES_OAEP_SHA_1", "webhooks");
    let out = hsm.path("webhooks.out");
    let (alice, a) = Custodian::new("alice", "ec-p256");
    let (bob, b) = Custodian::new("bob", "ec-p384");
    let (carol, c) = Custodian::new("carol", "rsa-3072");
    let (outsider, _) = Custodian::new("mallory", "ec-p256");
    let policy = hsm.path("policy.json");
    std::fs::write(
        &policy,
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "byok-ceremony/custodian-policy/v1",
            "threshold": 2,
            "custodians": [a, b, c],
        }))
        .unwrap(),
    )
    .unwrap();
    Setup {
        hsm,
        out,
        policy,
        custodians: vec![alice, bob, carol],
        outsider,
    }
}

#[test]
fn two_of_three_sign_and_verify_with_every_key_type() {
    let s = setup();
    fails_with(&s.out, &s.policy, "only 0 of the 2 custodians");
    let o = s.custodians[0].sign(&s.out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(s.out.join("attestations/alice.dsse.json").exists());
    fails_with(&s.out, &s.policy, "only 1 of the 2 custodians the policy requires signed this ceremony (valid signatures from: alice)");
    // Signing twice is refused, the first signature is kept.
    let again = s.custodians[0].sign(&s.out);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    for c in &s.custodians[1..] {
        let o = c.sign(&s.out);
        assert!(o.status.success(), "{}: {}", c.name, stderr(&o));
    }
    let o = verify(&s.out, &s.policy);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["signers"], serde_json::json!(["alice", "bob", "carol"]));
    assert_eq!(v["transcript_entries"], 6);
    let outputs: Vec<&str> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        outputs,
        [
            "EncryptedKeyMaterial.bin",
            "ImportParameters.json",
            "ImportToken.bin",
            "manifest.json"
        ]
    );

    // The envelope is standard DSSE.
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.out.join("attestations/bob.dsse.json")).unwrap())
            .unwrap();
    assert_eq!(
        env["payloadType"],
        "application/vnd.byok-ceremony.attestation.v1+json"
    );
    let payload: serde_json::Value =
        serde_json::from_slice(&b64().decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(payload["custodian"], "bob");
    assert_eq!(payload["confirmation"], "--yes");
    assert_eq!(payload["transcript_sha256"], v["transcript_sha256"]);
    let _ = &s.hsm;
}

use base64::Engine as _;

#[test]
fn tamper_corpus_is_reported_precisely() {
    let s = setup();
    for c in &s.custodians[..2] {
        assert!(c.sign(&s.out).status.success());
    }
    assert!(verify(&s.out, &s.policy).status.success());
    let case = |name: &str| {
        let d = s.hsm.path(&format!("case-{name}"));
        copy_dir(&s.out, &d);
        d
    };
    let transcript_lines = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("transcript.jsonl"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    let write_lines = |d: &Path, l: &[String]| {
        std::fs::write(
            d.join("transcript.jsonl"),
            l.iter().map(|x| format!("{x}\n")).collect::<String>(),
        )
        .unwrap()
    };

    // A byte changed in the wrapped key.
    let d = case("blob");
    let mut blob = std::fs::read(d.join("EncryptedKeyMaterial.bin")).unwrap();
    blob[10] ^= 1;
    std::fs::write(d.join("EncryptedKeyMaterial.bin"), blob).unwrap();
    fails_with(&d, &s.policy, "output EncryptedKeyMaterial.bin: SHA-256 is");

    // A file added, a file removed.
    let d = case("added");
    std::fs::write(d.join("extra.bin"), b"x").unwrap();
    fails_with(
        &d,
        &s.policy,
        "output extra.bin: is not recorded in the transcript",
    );
    let d = case("removed");
    std::fs::remove_file(d.join("ImportToken.bin")).unwrap();
    fails_with(
        &d,
        &s.policy,
        "output ImportToken.bin: is recorded in the transcript but missing",
    );

    // An entry changed, removed, reordered; the last entry changed.
    let d = case("entry-changed");
    let mut l = transcript_lines(&d);
    l[2] = l[2].replacen("pass", "PASS", 1);
    write_lines(&d, &l);
    fails_with(&d, &s.policy, "entry 3 does not chain to entry 2");
    let d = case("entry-removed");
    let mut l = transcript_lines(&d);
    l.remove(1);
    write_lines(&d, &l);
    fails_with(&d, &s.policy, "entry 1 has sequence number 2");
    let d = case("reordered");
    let mut l = transcript_lines(&d);
    l.swap(3, 4);
    write_lines(&d, &l);
    fails_with(&d, &s.policy, "entry 3 has sequence number 4");
    let d = case("last-changed");
    let mut l = transcript_lines(&d);
    let last = l.len() - 1;
    l[last] = l[last].replacen("\"time\":\"", "\"time\":\"1", 1);
    write_lines(&d, &l);
    fails_with(&d, &s.policy, "the transcript changed after signing");

    // A signature by a key outside the policy.
    let d = case("outsider");
    assert!(s.outsider.sign(&d).status.success());
    fails_with(&d, &s.policy, "which is not in the policy");

    // A duplicate signer: alice's signature twice in one envelope; bob's envelope renamed to carol.
    let d = case("duplicate");
    let p = d.join("attestations/alice.dsse.json");
    let mut env: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let sig = env["signatures"][0].clone();
    env["signatures"].as_array_mut().unwrap().push(sig);
    std::fs::write(&p, serde_json::to_vec(&env).unwrap()).unwrap();
    fails_with(&d, &s.policy, "carries \"alice\"'s signature twice");
    let d = case("renamed");
    std::fs::rename(
        d.join("attestations/bob.dsse.json"),
        d.join("attestations/carol.dsse.json"),
    )
    .unwrap();
    fails_with(
        &d,
        &s.policy,
        "carol.dsse.json: is the attestation of custodian \"bob\" (its payload says so), but its file name is for \"carol\"",
    );

    // Fewer than M.
    let d = case("fewer");
    std::fs::remove_file(d.join("attestations/bob.dsse.json")).unwrap();
    fails_with(&d, &s.policy, "only 1 of the 2 custodians");

    // A signature that does not verify (payload edited, signature kept).
    let d = case("payload-edited");
    let p = d.join("attestations/bob.dsse.json");
    let mut env: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&b64().decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    payload["confirmation"] = "typed".into();
    env["payload"] = b64().encode(serde_json::to_vec(&payload).unwrap()).into();
    std::fs::write(&p, serde_json::to_vec(&env).unwrap()).unwrap();
    fails_with(&d, &s.policy, "signature by \"bob\" does not verify");

    // The untouched directory still verifies.
    assert!(verify(&s.out, &s.policy).status.success());
}

#[test]
fn policies_are_parsed_strictly() {
    let s = setup();
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&s.policy).unwrap()).unwrap();
    let try_policy = |text: String, needle: &str| {
        let p = s.hsm.path("bad-policy.json");
        std::fs::write(&p, text).unwrap();
        fails_with(&s.out, &p, needle);
    };
    let mut unknown = good.clone();
    unknown["extra"] = 1.into();
    try_policy(unknown.to_string(), "unknown field");
    let text = good.to_string();
    try_policy(
        text.replacen("{", "{\"threshold\":1,", 1),
        "duplicate field",
    );
    let mut zero = good.clone();
    zero["threshold"] = 0.into();
    try_policy(
        zero.to_string(),
        "threshold 0 is impossible with 3 custodians",
    );
    let mut four = good.clone();
    four["threshold"] = 4.into();
    try_policy(four.to_string(), "threshold 4 is impossible");
    let mut shared = good.clone();
    shared["custodians"][2]["public_key"] = shared["custodians"][0]["public_key"].clone();
    try_policy(shared.to_string(), "have the same key");
    let mut dup_name = good.clone();
    dup_name["custodians"][1]["name"] = "alice".into();
    try_policy(dup_name.to_string(), "listed twice");
}
