//! `ceremony::verify` on committed ceremony directories (`tests/data/ceremony/`,
//! described in its README.md): good ones (a wrap, a ceremony run, and a
//! ceremony run written by the version of 2026-11-23), signed with software
//! custodian keys of every kind (ECDSA P-256, ECDSA P-384, RSA-3072 PSS), and
//! one per tamper case, each refused with its own error variant. No HSM is
//! needed.
//!
//! The signed directories are made by [`generate`] from the unsigned outputs
//! in `good-wrap/`, `good-run/` and `old-run/` and the keys in `keys/`; the test
//! `fixtures_are_what_the_generator_makes` checks every committed byte
//! against it. To rewrite them after a deliberate format change:
//! `cargo test --test ceremony_fixtures -- --ignored regenerate_signed_fixtures`
//! (and, with SoftHSM2 installed, `regenerate_unsigned_outputs` first to
//! make new unsigned outputs with the current code).

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use byok_ceremony::ceremony::attest::{
    self, AttestationProblem, OutputProblem, Payload, ATTESTATIONS,
};
use byok_ceremony::ceremony::dsse::{self, Envelope, Signature, SignatureError, PAYLOAD_TYPE};
use byok_ceremony::ceremony::transcript::{ChainError, KeyRecord, Step};
use byok_ceremony::ceremony::{verify, Policy, VerifyError};
use byok_ceremony::names::CustodianName;
use sha2::{Digest, Sha256};

/// The committed fixtures.
fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ceremony")
}

/// The unsigned directories real runs wrote (the generator's input):
/// `old-run` by the code of 2026-11-23 (before `key-intent`, check values on
/// `key-generated`, and the parameters digest), the others by the current code.
const UNSIGNED: [&str; 3] = ["good-wrap", "good-run", "old-run"];

/// When the fixtures say they were signed (so that they are reproducible).
const SIGNED_AT: &str = "2026-11-30T12:00:00Z";

// ---------------------------------------------------------------------------
// Software custodian keys

/// A custodian key in software, as `custodian init` makes them on a token.
enum SoftKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(rsa::RsaPrivateKey),
}

/// Deterministic bytes for RSA-PSS salts, so that regenerating gives the
/// same fixtures: SHA-256(seed || counter) blocks. For test fixtures only.
struct FixtureRng {
    seed: [u8; 32],
    counter: u64,
}

impl rsa::rand_core::RngCore for FixtureRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            let block = Sha256::new()
                .chain_update(self.seed)
                .chain_update(self.counter.to_be_bytes())
                .finalize();
            self.counter += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for FixtureRng {}

impl SoftKey {
    /// Read `keys/FILE` (PKCS#8 PEM, as `openssl genpkey` writes it).
    fn load(file: &str) -> Self {
        let pem = std::fs::read_to_string(data().join("keys").join(file)).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = common::b64().decode(b64).unwrap();
        use p256::pkcs8::DecodePrivateKey;
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(&der) {
            return SoftKey::P256(k);
        }
        if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_der(&der) {
            return SoftKey::P384(k);
        }
        SoftKey::Rsa(rsa::RsaPrivateKey::from_pkcs8_der(&der).unwrap())
    }

    /// DER SubjectPublicKeyInfo.
    fn spki(&self) -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey;
        match self {
            SoftKey::P256(k) => k.verifying_key().to_public_key_der().unwrap().into_vec(),
            SoftKey::P384(k) => k.verifying_key().to_public_key_der().unwrap().into_vec(),
            SoftKey::Rsa(k) => k.to_public_key().to_public_key_der().unwrap().into_vec(),
        }
    }

    /// Sign as `ceremony sign` does: ECDSA (RFC 6979) normalized to low S,
    /// ASN.1 DER; RSA-PSS SHA-256, MGF1-SHA-256, 32-byte salt.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
        match self {
            SoftKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(message);
                s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
            }
            SoftKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(message);
                s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
            }
            SoftKey::Rsa(k) => {
                let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(k.clone(), 32);
                let mut rng = FixtureRng {
                    seed: Sha256::digest(message).into(),
                    counter: 0,
                };
                signer.sign_with_rng(&mut rng, message).to_vec()
            }
        }
    }
}

fn custodian(name: &str) -> (CustodianName, SoftKey) {
    let file = match name {
        "alice" => "alice.p256.pem",
        "bob" => "bob.p384.pem",
        "carol" => "carol.rsa3072.pem",
        "mallory" => "mallory.p256.pem",
        _ => unreachable!("no fixture key for {name}"),
    };
    (CustodianName::new(name).unwrap(), SoftKey::load(file))
}

fn policy() -> Policy {
    Policy::read(&data().join("policy.json")).unwrap()
}

// ---------------------------------------------------------------------------
// The generator

fn copy_without_attestations(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() == ATTESTATIONS {
            continue;
        }
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_without_attestations(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The payload `ceremony sign --yes` would make for `dir` (at a fixed time).
fn payload(dir: &Path, name: &CustodianName, partial: bool) -> Payload {
    let mut p = attest::payload_for(dir, name, "--yes", partial).unwrap();
    p.signed_at = SIGNED_AT.into();
    p
}

/// The envelope `ceremony sign` writes for `payload`, signed by `key`.
fn envelope(payload: &Payload, key: &SoftKey) -> Envelope {
    let body = serde_json::to_vec(payload).unwrap();
    let sig = key.sign(&dsse::pae(PAYLOAD_TYPE, &body));
    Envelope {
        payload: common::b64().encode(&body),
        payload_type: PAYLOAD_TYPE.into(),
        signatures: vec![Signature {
            keyid: dsse::keyid(&key.spki()),
            sig: common::b64().encode(sig),
        }],
    }
}

fn sign(dir: &Path, name: &str, partial: bool) {
    let (name, key) = custodian(name);
    let env = envelope(&payload(dir, &name, partial), &key);
    attest::write_envelope(dir, &name, &env).unwrap();
}

fn envelope_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(ATTESTATIONS).join(format!("{name}.dsse.json"))
}

fn read_envelope(dir: &Path, name: &str) -> Envelope {
    serde_json::from_slice(&std::fs::read(envelope_file(dir, name)).unwrap()).unwrap()
}

/// Replace an envelope, written as `ceremony sign` writes them.
fn write_envelope(dir: &Path, name: &str, env: &Envelope) {
    let mut json = serde_json::to_vec_pretty(env).unwrap();
    json.push(b'\n');
    std::fs::write(envelope_file(dir, name), json).unwrap();
}

fn transcript_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("transcript.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_transcript(dir: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("transcript.jsonl"), text).unwrap();
}

/// `(r, n - s)` for an ASN.1 DER P-256 signature `(r, s)`.
fn high_s(der: &[u8]) -> Vec<u8> {
    use p256::elliptic_curve::bigint::Encoding as _;
    use p256::elliptic_curve::Curve as _;
    let s = p256::ecdsa::Signature::from_der(der).unwrap();
    let raw = s.to_bytes();
    let n = rsa::BigUint::from_bytes_be(&p256::NistP256::ORDER.to_be_bytes());
    let flipped = (n - rsa::BigUint::from_bytes_be(&raw[32..])).to_bytes_be();
    let mut out = raw[..32].to_vec();
    out.extend(std::iter::repeat_n(0u8, 32 - flipped.len()));
    out.extend(flipped);
    p256::ecdsa::Signature::from_slice(&out)
        .unwrap()
        .to_der()
        .as_bytes()
        .to_vec()
}

/// A tamper case: a copy of a signed good directory, changed by `change`.
fn case(root: &Path, from: &str, name: &str, change: impl FnOnce(&Path)) {
    let d = root.join(name);
    common::copy_dir(&root.join(from), &d);
    change(&d);
}

/// Write every signed fixture under `root`, from the unsigned outputs in
/// `unsigned` (which may be `root` itself). Deterministic.
fn generate(unsigned: &Path, root: &Path) {
    for u in UNSIGNED {
        let (from, to) = (unsigned.join(u), root.join(u));
        let staged = root.join(format!(".{u}.unsigned"));
        copy_without_attestations(&from, &staged);
        if to.exists() {
            std::fs::remove_dir_all(&to).unwrap();
        }
        std::fs::rename(&staged, &to).unwrap();
    }
    // The good ones: a wrap signed by all three key kinds, a ceremony run by two.
    let wrap = root.join("good-wrap");
    for name in ["alice", "bob", "carol"] {
        sign(&wrap, name, false);
    }
    let run = root.join("good-run");
    for name in ["alice", "carol"] {
        sign(&run, name, false);
    }
    let old = root.join("old-run");
    for name in ["bob", "carol"] {
        sign(&old, name, false);
    }
    // An unfinished run (the last entry and SUMMARY.md it records are gone).
    let unfinished = |d: &Path| {
        std::fs::remove_dir_all(d.join(ATTESTATIONS)).unwrap();
        let mut l = transcript_lines(d);
        l.pop();
        write_transcript(d, &l);
        std::fs::remove_file(d.join("SUMMARY.md")).unwrap();
    };
    case(root, "good-run", "partial-run", |d| {
        unfinished(d);
        sign(d, "alice", true);
        sign(d, "bob", true);
    });
    case(root, "good-run", "unacknowledged-partial", |d| {
        unfinished(d);
        for name in ["alice", "bob"] {
            let (n, key) = custodian(name);
            let mut p = payload(d, &n, true);
            p.partial = false;
            attest::write_envelope(d, &n, &envelope(&p, &key)).unwrap();
        }
    });

    // Files.
    case(root, "good-wrap", "blob-changed", |d| {
        let p = d.join("EncryptedKeyMaterial.bin");
        let mut blob = std::fs::read(&p).unwrap();
        blob[10] ^= 1;
        std::fs::write(p, blob).unwrap();
    });
    case(root, "good-wrap", "file-added", |d| {
        std::fs::write(d.join("extra.bin"), b"x").unwrap()
    });
    case(root, "good-wrap", "file-removed", |d| {
        std::fs::remove_file(d.join("ImportToken.bin")).unwrap()
    });

    // The transcript.
    case(root, "good-wrap", "entry-changed", |d| {
        let mut l = transcript_lines(d);
        l[2] = l[2].replacen("pass", "PASS", 1);
        write_transcript(d, &l);
    });
    case(root, "good-wrap", "entry-removed", |d| {
        let mut l = transcript_lines(d);
        l.remove(1);
        write_transcript(d, &l);
    });
    case(root, "good-wrap", "entries-reordered", |d| {
        let mut l = transcript_lines(d);
        l.swap(3, 4);
        write_transcript(d, &l);
    });
    case(root, "good-wrap", "last-entry-changed", |d| {
        let mut l = transcript_lines(d);
        let last = l.len() - 1;
        l[last] = l[last].replacen("\"time\":\"", "\"time\":\"1", 1);
        write_transcript(d, &l);
    });

    // Signers and envelopes.
    case(root, "good-wrap", "outsider", |d| sign(d, "mallory", false));
    case(root, "good-wrap", "duplicate-signature", |d| {
        let mut env = read_envelope(d, "alice");
        env.signatures.push(env.signatures[0].clone());
        write_envelope(d, "alice", &env);
    });
    case(root, "good-wrap", "renamed-envelope", |d| {
        std::fs::remove_file(envelope_file(d, "carol")).unwrap();
        std::fs::rename(envelope_file(d, "bob"), envelope_file(d, "carol")).unwrap();
    });
    case(root, "good-wrap", "fewer-than-m", |d| {
        std::fs::remove_file(envelope_file(d, "bob")).unwrap();
        std::fs::remove_file(envelope_file(d, "carol")).unwrap();
    });
    case(root, "good-wrap", "payload-edited", |d| {
        let mut env = read_envelope(d, "bob");
        let mut p: Payload = serde_json::from_slice(&dsse::payload_bytes(&env).unwrap()).unwrap();
        p.confirmation = "typed".into();
        env.payload = common::b64().encode(serde_json::to_vec(&p).unwrap());
        write_envelope(d, "bob", &env);
    });
    case(root, "good-wrap", "signed-by-other", |d| {
        // bob's payload, signed by carol's key (keyid carol's).
        let (bob, _) = custodian("bob");
        let (_, carol_key) = custodian("carol");
        std::fs::remove_file(envelope_file(d, "bob")).unwrap();
        let env = envelope(&payload(d, &bob, false), &carol_key);
        write_envelope(d, "bob", &env);
    });
    case(root, "good-wrap", "high-s", |d| {
        let mut env = read_envelope(d, "alice");
        let sig = common::b64().decode(&env.signatures[0].sig).unwrap();
        env.signatures[0].sig = common::b64().encode(high_s(&sig));
        write_envelope(d, "alice", &env);
    });
    case(root, "good-wrap", "keyid-zeroed", |d| {
        let mut env = read_envelope(d, "alice");
        env.signatures[0].keyid = "0".repeat(64);
        write_envelope(d, "alice", &env);
    });
    case(root, "good-wrap", "keyid-swapped", |d| {
        let mut env = read_envelope(d, "bob");
        env.signatures[0].keyid = dsse::keyid(&custodian("carol").1.spki());
        write_envelope(d, "bob", &env);
    });
}

/// Every directory [`generate`] writes, relative to the fixtures.
const GENERATED: [&str; 21] = [
    "good-wrap",
    "good-run",
    "old-run",
    "partial-run",
    "unacknowledged-partial",
    "blob-changed",
    "file-added",
    "file-removed",
    "entry-changed",
    "entry-removed",
    "entries-reordered",
    "last-entry-changed",
    "outsider",
    "duplicate-signature",
    "renamed-envelope",
    "fewer-than-m",
    "payload-edited",
    "signed-by-other",
    "high-s",
    "keyid-zeroed",
    "keyid-swapped",
];

/// Every file under `dir`, relative, with its bytes, sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                walk(root, &r, out);
            } else {
                out.push((
                    r.to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out);
    out.sort();
    out
}

#[test]
fn fixtures_are_what_the_generator_makes() {
    let tmp = tempfile::tempdir().unwrap();
    generate(&data(), tmp.path());
    for name in GENERATED {
        let made = tree(&tmp.path().join(name));
        let committed = tree(&data().join(name));
        let paths = |t: &[(String, Vec<u8>)]| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&committed), paths(&made), "{name}: file list");
        for ((path, a), (_, b)) in committed.iter().zip(&made) {
            assert!(a == b, "{name}/{path} differs from what the generator makes: regenerate (see tests/data/ceremony/README.md)");
        }
    }
}

/// Rewrite the signed fixtures (deliberately; see the README).
#[test]
#[ignore = "rewrites tests/data/ceremony; run by hand after a deliberate format change"]
fn regenerate_signed_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    generate(&data(), tmp.path());
    for name in GENERATED {
        let to = data().join(name);
        if to.exists() {
            std::fs::remove_dir_all(&to).unwrap();
        }
        common::copy_dir(&tmp.path().join(name), &to);
    }
}

/// Make new unsigned outputs with the current code on SoftHSM2: a single
/// `wrap` (HMAC_256, RSAES_OAEP_SHA_1) and a `ceremony run` (one
/// SYMMETRIC_DEFAULT key, one target). Run `regenerate_signed_fixtures` after.
#[test]
#[ignore = "rewrites tests/data/ceremony/good-*; needs SoftHSM2; run by hand"]
fn regenerate_unsigned_outputs() {
    use common::*;
    let hsm = SoftHsm::new("fixture-hsm");
    let kms = FakeKms::new(2048);
    wrap_ok(&hsm, &kms, "HMAC_256", "RSAES_OAEP_SHA_1", "webhooks");
    let dir = hsm.dir.path();
    std::fs::copy(data().join("policy.json"), dir.join("policy.json")).unwrap();
    std::fs::create_dir(dir.join("params")).unwrap();
    let k = FakeKms::new(2048);
    k.write_params(&dir.join("params/s3.json"), 600);
    let file = dir.join("ceremony.json");
    let ceremony = serde_json::json!({
        "format": "byok-ceremony/ceremony/v1",
        "ceremony_id": "2026-11-fixture",
        "purpose": "Fixture for ceremony::verify",
        "hsm": {"module": SOFTHSM_MODULE, "token_label": "fixture-hsm"},
        "policy": "policy.json",
        "keys": [{"label": "s3-prod", "key_spec": "SYMMETRIC_DEFAULT", "source": "generate",
                  "targets": [{"name": "eu-west-1", "params": "params/s3.json",
                               "wrapping_algorithm": "RSAES_OAEP_SHA_1",
                               "wrapping_key_sha256": k.fingerprint()}]}],
    });
    std::fs::write(&file, serde_json::to_vec_pretty(&ceremony).unwrap()).unwrap();
    let out = dir.join("run.out");
    let o = run(hsm.airgap().args([
        "ceremony",
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--pin-env",
        "BYOK_TEST_PIN",
        "--non-interactive",
        "--expect-parameters-digest",
        &params_digest(&file),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    for (from, to) in [(hsm.path("webhooks.out"), "good-wrap"), (out, "good-run")] {
        let to = data().join(to);
        if to.exists() {
            std::fs::remove_dir_all(&to).unwrap();
        }
        copy_without_attestations(&from, &to);
    }
}

// ---------------------------------------------------------------------------
// ceremony::verify on each fixture

fn verify_case(name: &str) -> Result<byok_ceremony::ceremony::VerifiedCeremony, VerifyError> {
    verify(&data().join(name), &policy())
}

fn name(n: &str) -> CustodianName {
    CustodianName::new(n).unwrap()
}

/// The refusal of an attestation: its file and problem.
fn attestation_problem(case: &str) -> (String, AttestationProblem) {
    match verify_case(case) {
        Err(VerifyError::Attestation { file, problem }) => (file, problem),
        other => panic!("{case}: expected an attestation refusal, got {other:?}"),
    }
}

#[test]
fn good_directories_verify() {
    let v = verify_case("good-wrap").unwrap();
    assert_eq!(v.signers(), ["alice", "bob", "carol"]);
    assert!(v.is_complete());
    assert_eq!(v.bundles(), [""]);
    assert_eq!(v.entries().len(), 6);
    assert_eq!(v.entries()[0].step.name(), "wrap-start");
    let paths: Vec<&str> = v.outputs().iter().map(|o| o.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "EncryptedKeyMaterial.bin",
            "ImportParameters.json",
            "ImportToken.bin",
            "manifest.json"
        ]
    );
    let blob = std::fs::read(data().join("good-wrap/EncryptedKeyMaterial.bin")).unwrap();
    assert!(v.covers("EncryptedKeyMaterial.bin", &blob));
    assert!(!v.covers("EncryptedKeyMaterial.bin", b"other bytes"));

    let v = verify_case("good-run").unwrap();
    assert_eq!(v.signers(), ["alice", "carol"]);
    assert!(v.is_complete());
    assert_eq!(v.ceremony_id(), "2026-11-fixture");
    assert_eq!(v.bundles(), ["s3-prod/eu-west-1"]);
    assert_eq!(v.entries()[0].step.name(), "ceremony-start");
    assert_eq!(v.entries().last().unwrap().step.name(), "ceremony-complete");
}

/// The `key-generated` record of a verified directory's transcript.
fn key_generated(v: &byok_ceremony::ceremony::VerifiedCeremony) -> KeyRecord {
    v.entries()
        .iter()
        .find_map(|e| match &e.step {
            Step::KeyGenerated(k) => Some(k.clone()),
            _ => None,
        })
        .expect("a key-generated entry")
}

#[test]
fn transcripts_written_before_the_typed_schema_still_verify() {
    // Both good directories were written by the code before issue 9's typed
    // transcript: `key-generated` nests `hsm_key {label, id_hex}` in a wrap's
    // transcript and puts them at the top level in a ceremony run's. Both
    // read into the one typed record.
    let raw = |case: &str| {
        let text = std::fs::read_to_string(data().join(case).join("transcript.jsonl")).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains(r#""step":"key-generated""#))
            .unwrap()
            .to_string();
        line
    };
    assert!(raw("good-wrap").contains(r#""hsm_key":{"#));
    let kg = key_generated(&verify_case("good-wrap").unwrap());
    assert_eq!((kg.label.as_str(), kg.id_hex.len()), ("webhooks", 32));
    assert_eq!(kg.wrap_with_trusted, Some(false));
    assert_eq!(kg.protection.map(|p| p.sensitive), Some(true));

    assert!(!raw("good-run").contains(r#""hsm_key""#));
    let kg = key_generated(&verify_case("good-run").unwrap());
    assert_eq!(kg.label, "s3-prod");
    assert_eq!(kg.id_hex.len(), 32);
    assert!(kg.checks.is_some_and(|c| c.kcv.is_some()));
}

/// Every line of every committed transcript whose chain verifies, parsed
/// into the typed schema and written again, is byte for byte the line on
/// disk, except `wrap`'s `key-generated`, which is now written in the one
/// (flat) shape.
#[test]
fn the_typed_schema_writes_the_bytes_of_every_committed_transcript() {
    let (mut cases, mut lines, mut reshaped) = (0, 0, 0);
    for e in std::fs::read_dir(data()).unwrap() {
        let path = e.unwrap().path().join("transcript.jsonl");
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        // Tampered chains are refused before typing (tested above).
        let Ok(v) = byok_ceremony::ceremony::transcript::verify_bytes(&bytes) else {
            continue;
        };
        cases += 1;
        let on_disk = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        for (line, entry) in on_disk.zip(&v.entries) {
            lines += 1;
            let written = entry.to_line().unwrap();
            let orig: serde_json::Value = serde_json::from_slice(line).unwrap();
            if orig["data"].get("hsm_key").is_some() {
                reshaped += 1;
                let again: serde_json::Value = serde_json::from_slice(&written).unwrap();
                assert_eq!(entry.step.name(), "key-generated");
                assert_eq!(again["data"]["label"], orig["data"]["hsm_key"]["label"]);
                assert_eq!(again["data"]["id_hex"], orig["data"]["hsm_key"]["id_hex"]);
                assert!(again["data"].get("hsm_key").is_none());
            } else {
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    String::from_utf8_lossy(line),
                    "{}",
                    path.display()
                );
            }
        }
    }
    assert!(cases >= 15, "{cases}");
    assert!(lines > 80, "{lines}");
    assert!(reshaped >= 10, "{reshaped}");
}

#[test]
fn a_ceremony_run_transcript_of_2026_11_23_still_verifies() {
    let v = verify_case("old-run").unwrap();
    assert_eq!(v.signers(), ["bob", "carol"]);
    assert!(v.is_complete());
    assert_eq!(v.bundles(), ["webhooks/eu-west-1"]);
    // What makes it the old format: no key-intent, no parameters digest, and
    // the check value recorded with the wrap, not with the key.
    let steps: Vec<&str> = v.entries().iter().map(|e| e.step.name()).collect();
    assert!(!steps.contains(&"key-intent"), "{steps:?}");
    let Step::CeremonyStart(start) = &v.entries()[0].step else {
        panic!("{:?}", v.entries()[0].step)
    };
    assert!(start.parameters_digest.is_none());
    assert!(key_generated(&v).checks.is_none());
}

#[test]
fn an_unfinished_run_verifies_only_when_every_signer_said_partial() {
    let v = verify_case("partial-run").unwrap();
    assert!(!v.is_complete());
    assert_eq!(v.signers(), ["alice", "bob"]);
    assert_eq!(
        attestation_problem("unacknowledged-partial"),
        (
            "alice.dsse.json".into(),
            AttestationProblem::UnacknowledgedPartial
        )
    );
}

#[test]
fn changed_added_and_removed_files_are_refused() {
    let file = |case: &str| match verify_case(case) {
        Err(VerifyError::Output { path, problem }) => (path, problem),
        other => panic!("{case}: expected an output refusal, got {other:?}"),
    };
    let (path, problem) = file("blob-changed");
    assert_eq!(path, "EncryptedKeyMaterial.bin");
    let OutputProblem::Changed { found, recorded } = problem else {
        panic!("{problem:?}")
    };
    let blob = std::fs::read(data().join("blob-changed/EncryptedKeyMaterial.bin")).unwrap();
    assert_eq!(found, hex::encode(Sha256::digest(&blob)));
    let good = std::fs::read(data().join("good-wrap/EncryptedKeyMaterial.bin")).unwrap();
    assert_eq!(recorded, hex::encode(Sha256::digest(&good)));
    assert_eq!(
        file("file-added"),
        ("extra.bin".into(), OutputProblem::NotRecorded)
    );
    assert_eq!(
        file("file-removed"),
        ("ImportToken.bin".into(), OutputProblem::Missing)
    );
}

#[test]
fn transcript_tampering_is_named() {
    let chain = |case: &str| match verify_case(case) {
        Err(VerifyError::Chain(e)) => e,
        other => panic!("{case}: expected a chain refusal, got {other:?}"),
    };
    assert_eq!(
        chain("entry-changed"),
        ChainError::Broken { line: 3, prev: 2 }
    );
    assert_eq!(
        chain("entry-removed"),
        ChainError::Sequence { line: 1, found: 2 }
    );
    assert_eq!(
        chain("entries-reordered"),
        ChainError::Sequence { line: 3, found: 4 }
    );
    // The last entry has no successor to break: the signatures catch it.
    let (file, problem) = attestation_problem("last-entry-changed");
    assert_eq!(file, "alice.dsse.json");
    let AttestationProblem::OtherTranscript {
        signed,
        signed_entries,
        actual,
        actual_entries,
    } = problem
    else {
        panic!("{problem:?}")
    };
    assert_eq!(
        signed,
        verify_case("good-wrap").unwrap().transcript_digest()
    );
    assert_ne!(signed, actual);
    assert_eq!((signed_entries, actual_entries), (6, 6));
}

#[test]
fn signer_refusals_are_typed() {
    let mallory_keyid = dsse::keyid(&custodian("mallory").1.spki());
    assert_eq!(
        attestation_problem("outsider"),
        (
            "mallory.dsse.json".into(),
            AttestationProblem::NotInPolicy {
                keyid: mallory_keyid
            }
        )
    );
    assert_eq!(
        attestation_problem("duplicate-signature"),
        (
            "alice.dsse.json".into(),
            AttestationProblem::DuplicateSignature(name("alice"))
        )
    );
    assert_eq!(
        attestation_problem("renamed-envelope"),
        (
            "carol.dsse.json".into(),
            AttestationProblem::FileNameMismatch {
                payload_custodian: name("bob"),
                file_custodian: "carol".into()
            }
        )
    );
    assert_eq!(
        attestation_problem("signed-by-other"),
        (
            "bob.dsse.json".into(),
            AttestationProblem::SignedByOtherCustodian {
                claimed: name("bob"),
                signer: name("carol")
            }
        )
    );
    match verify_case("fewer-than-m") {
        Err(VerifyError::Threshold {
            signed: 1,
            threshold: 2,
            names,
        }) => assert_eq!(names, "alice"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_signatures_are_refused_by_the_key_that_should_verify_them() {
    let signature = |case: &str| match verify_case(case) {
        Err(VerifyError::Signature {
            file,
            custodian,
            source,
        }) => (file, custodian, source),
        other => panic!("{case}: expected a signature refusal, got {other:?}"),
    };
    assert_eq!(
        signature("payload-edited"),
        (
            "bob.dsse.json".into(),
            "bob".into(),
            SignatureError::Invalid
        )
    );
    assert_eq!(
        signature("high-s"),
        (
            "alice.dsse.json".into(),
            "alice".into(),
            SignatureError::HighS
        )
    );
}

#[test]
fn a_wrong_keyid_is_reported_as_a_wrong_hint_not_a_wrong_signer() {
    let keyid = |n: &str| dsse::keyid(&custodian(n).1.spki());
    let (file, problem) = attestation_problem("keyid-zeroed");
    assert_eq!(file, "alice.dsse.json");
    assert_eq!(
        problem,
        AttestationProblem::WrongKeyId {
            keyid: "0".repeat(64),
            signer: name("alice"),
            hinted: None,
            expected: keyid("alice"),
        }
    );
    let text = problem.to_string();
    assert!(
        text.contains("verifies with \"alice\"'s policy key")
            && text.contains("names no key in the policy")
            && !text.contains("not in the policy"),
        "{text}"
    );
    let (file, problem) = attestation_problem("keyid-swapped");
    assert_eq!(file, "bob.dsse.json");
    assert_eq!(
        problem,
        AttestationProblem::WrongKeyId {
            keyid: keyid("carol"),
            signer: name("bob"),
            hinted: Some(name("carol")),
            expected: keyid("bob"),
        }
    );
    let text = problem.to_string();
    assert!(
        text.contains("verifies with \"bob\"'s policy key")
            && text.contains("names \"carol\"'s key")
            && text.contains("keyids are not signed"),
        "{text}"
    );
}

#[test]
fn the_fixture_policy_is_two_of_three_with_every_key_kind() {
    let p = policy();
    assert_eq!(p.threshold, 2);
    let kinds: Vec<(&str, &str)> = p
        .custodians
        .iter()
        .map(|c| (c.name.as_str(), c.key.algorithm()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("alice", "ECDSA P-256 SHA-256"),
            ("bob", "ECDSA P-384 SHA-384"),
            ("carol", "RSA-PSS SHA-256")
        ]
    );
    for c in &p.custodians {
        assert_eq!(c.keyid, dsse::keyid(&custodian(c.name.as_str()).1.spki()));
    }
}

#[test]
fn symlinks_are_refused_wherever_they_are() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let d = tmp.path().join(name);
        common::copy_dir(&data().join("good-wrap"), &d);
        assert!(verify(&d, &policy()).is_ok(), "{name}: the copy verifies");
        d
    };
    let not_regular = |d: &Path| match verify(d, &policy()) {
        Err(VerifyError::NotRegular(what)) => what,
        other => panic!("{}: expected NotRegular, got {other:?}", d.display()),
    };
    // An output file replaced by a symlink to an identical copy.
    let d = copy("output-link");
    let elsewhere = tmp.path().join("blob");
    std::fs::rename(d.join("ImportToken.bin"), &elsewhere).unwrap();
    symlink(&elsewhere, d.join("ImportToken.bin")).unwrap();
    assert_eq!(not_regular(&d), "ImportToken.bin");
    // The transcript, and the attestations directory, moved out and linked.
    let d = copy("transcript-link");
    let t = tmp.path().join("transcript-elsewhere");
    std::fs::rename(d.join("transcript.jsonl"), &t).unwrap();
    symlink(&t, d.join("transcript.jsonl")).unwrap();
    assert_eq!(not_regular(&d), "transcript.jsonl");
    let d = copy("attestations-link");
    let a = tmp.path().join("attestations-elsewhere");
    std::fs::rename(d.join(ATTESTATIONS), &a).unwrap();
    symlink(&a, d.join(ATTESTATIONS)).unwrap();
    assert_eq!(not_regular(&d), ATTESTATIONS);
    // An envelope that is a symlink.
    let d = copy("envelope-link");
    let e = tmp.path().join("alice-elsewhere.dsse.json");
    std::fs::rename(envelope_file(&d, "alice"), &e).unwrap();
    symlink(&e, envelope_file(&d, "alice")).unwrap();
    assert!(matches!(
        verify(&d, &policy()),
        Err(VerifyError::Attestation { file, problem: AttestationProblem::NotAnEnvelopeFile }) if file == "alice.dsse.json"
    ));
}

#[test]
fn stray_entries_are_refused_but_empty_directories_are_not_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("stray");
    common::copy_dir(&data().join("good-wrap"), &d);
    // Empty directories hold no file: nothing to record, nothing refused.
    std::fs::create_dir_all(d.join("empty/deeper")).unwrap();
    assert!(verify(&d, &policy()).is_ok());
    // A hidden file is an output like any other: not recorded, refused.
    std::fs::write(d.join("empty/.hidden"), b"").unwrap();
    assert!(matches!(
        verify(&d, &policy()),
        Err(VerifyError::Output { path, problem: OutputProblem::NotRecorded }) if path == "empty/.hidden"
    ));
    std::fs::remove_file(d.join("empty/.hidden")).unwrap();
    // Anything in attestations/ that is not NAME.dsse.json is refused.
    std::fs::write(d.join("attestations/notes.txt"), b"x").unwrap();
    assert!(matches!(
        verify(&d, &policy()),
        Err(VerifyError::Attestation { file, problem: AttestationProblem::NotAnEnvelopeFile }) if file == "notes.txt"
    ));
}
