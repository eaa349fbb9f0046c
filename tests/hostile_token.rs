//! The token side and the signature side of hostile media (issue 8): keys that
//! were imported with a known value, copies of generated keys, PIN files
//! others can read, high-S signatures, oversized files, and signatures over
//! an unfinished run.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

/// A custodian with a signing key on their own SoftHSM2 card.
struct Custodian {
    name: &'static str,
    card: SoftHsm,
}

impl Custodian {
    fn new(name: &'static str, key_type: &str) -> (Self, serde_json::Value) {
        let card = SoftHsm::new(&format!("{name}-card"));
        let mut args = vec!["custodian".to_string(), "init".into()];
        args.extend(card.hsm_args());
        args.extend(
            [
                "--name",
                name,
                "--key-label",
                "sig",
                "--key-type",
                key_type,
                "--json",
            ]
            .map(String::from),
        );
        let o = run(card.airgap().args(args));
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (Custodian { name, card }, v["entry"].clone())
    }

    fn sign(&self, dir: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "ceremony".to_string(),
            "sign".into(),
            dir.to_str().unwrap().into(),
        ];
        args.extend(self.card.hsm_args());
        args.extend(["--custodian", self.name, "--key-label", "sig", "--yes"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        run(self.card.airgap().args(args))
    }
}

fn write_policy(path: &Path, threshold: usize, entries: &[serde_json::Value]) {
    std::fs::write(
        path,
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "byok-ceremony/custodian-policy/v1",
            "threshold": threshold,
            "custodians": entries,
        }))
        .unwrap(),
    )
    .unwrap();
}

fn verify(dir: &Path, policy: &Path) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_byok-airgap")).args([
        "ceremony",
        "verify",
        dir.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]))
}

fn refused_with(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected a refusal with {needle:?}");
    assert!(
        stderr(o).contains(needle),
        "expected {needle:?} in:\n{}",
        stderr(o)
    );
}

/// A sparse file of `len` bytes: reading it whole would take gigabytes.
fn sparse(path: &Path, len: u64) {
    let _ = std::fs::remove_file(path);
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

const HUGE: u64 = 8 << 30;

/// The token as an attacker with the user PIN sees it: a key created from a
/// known value is refused by `wrap --existing`, and a key `wrap` generated
/// can be neither copied nor changed. (One test: SoftHSM2 is initialized once
/// per process, with one configuration.)
#[test]
fn token_objects_keep_their_promises() {
    let t = SoftHsm::new("hostile");
    let kms = FakeKms::new(2048);
    let params = t.path("p.json");
    kms.write_params(&params, 600);

    // A wrap generates a key; its manifest records what the token reports.
    let out = t.path("gen.out");
    let o = run(t.airgap().args(wrap_args(
        &t,
        &params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "gen",
        &kms.fingerprint(),
        &out,
    )));
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let p = &manifest["hsm_key"]["protection"];
    assert_eq!(p["modifiable"], false, "{p}");
    assert_eq!(p["copyable"], false, "{p}");

    std::env::set_var("SOFTHSM2_CONF", &t.conf);
    let ctx = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx.get_slots_with_initialized_token().unwrap()[0];
    let session = ctx.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::new(USER_PIN.into())))
        .unwrap();

    // The generated key cannot be copied (into a copy with looser attributes)…
    let gen = session
        .find_objects(&[
            Attribute::Label(b"gen".to_vec()),
            Attribute::Class(ObjectClass::SECRET_KEY),
        ])
        .unwrap();
    assert_eq!(gen.len(), 1);
    match session.copy_object(gen[0], &[Attribute::Label(b"gen-copy".to_vec())]) {
        Err(CkError::Pkcs11(RvError::ActionProhibited, _)) => {}
        other => panic!("C_CopyObject of a generated key must be prohibited, got {other:?}"),
    }
    match session.copy_object(gen[0], &[Attribute::Sensitive(false)]) {
        Err(CkError::Pkcs11(RvError::ActionProhibited, _)) => {}
        other => panic!("C_CopyObject of a generated key must be prohibited, got {other:?}"),
    }
    // …nor changed.
    assert!(session
        .update_attributes(gen[0], &[Attribute::Label(b"renamed".to_vec())])
        .is_err());
    let attrs = session
        .get_attributes(
            gen[0],
            &[
                AttributeType::Modifiable,
                AttributeType::Copyable,
                AttributeType::Local,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Modifiable(false)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Copyable(false)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Local(true)), "{attrs:?}");

    // An attacker plants a key whose value they know, sensitive and
    // extractable like a real one, under the label a ceremony will ask for.
    session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Sign(true),
            Attribute::Label(b"planted".to_vec()),
            Attribute::Id(b"planted-id".to_vec()),
            Attribute::Value(vec![0x42; 32]),
        ])
        .unwrap();
    session.logout().unwrap();
    drop(session);

    let planted_out = t.path("planted.out");
    let mut args = wrap_args(
        &t,
        &params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "planted",
        &kms.fingerprint(),
        &planted_out,
    );
    args.push("--existing".into());
    let o = run(t.airgap().args(args));
    refused_with(&o, "the key labelled \"planted\" cannot be used");
    refused_with(&o, "CKA_LOCAL");
    refused_with(&o, "Generate a new key instead");
    assert!(
        !planted_out.exists(),
        "nothing is written for a refused key"
    );

    // The key wrap generated passes the same checks.
    let again = t.path("gen-again.out");
    let mut args = wrap_args(
        &t,
        &params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "gen",
        &kms.fingerprint(),
        &again,
    );
    args.push("--existing".into());
    let o = run(t.airgap().args(args));
    assert!(o.status.success(), "{}", stderr(&o));
    ctx.finalize().unwrap();

    // The library: a ceremony records the CKA_ID it intends before generating.
    use byok_ceremony::hsm::keygen::{self, KeyPolicy};
    use byok_ceremony::hsm::{Hsm, HsmError, ModuleSpec, TokenSelector};
    use byok_ceremony::kms::KeySpec;
    let hsm = Hsm::open(
        &ModuleSpec {
            path: SOFTHSM_MODULE.into(),
            init_string: None,
        },
        &TokenSelector::Label(t.label.clone()),
    )
    .unwrap();
    let session = hsm
        .login(&secrecy::SecretString::from(USER_PIN.to_string()))
        .unwrap();
    let spec = KeySpec::SymmetricDefault;
    let key = keygen::generate_with_id(
        &session,
        spec,
        "with-id",
        b"intended-id",
        KeyPolicy::default(),
    )
    .unwrap();
    assert_eq!(key.id, b"intended-id");
    let p = keygen::protection(&session, key.handle).unwrap();
    assert!(!p.modifiable && !p.copyable && p.sensitive, "{p:?}");
    let found = keygen::find_existing(&session, spec, "with-id").unwrap();
    assert_eq!(found.id, b"intended-id");
    for (label, id) in [
        ("other", &b"intended-id"[..]),
        ("other", &b""[..]),
        ("other", &[7u8; 65][..]),
    ] {
        match keygen::generate_with_id(&session, spec, label, id, KeyPolicy::default()) {
            Err(HsmError::BadKeyId { .. }) => {}
            other => panic!("CKA_ID {id:?} must be refused, got {other:?}"),
        }
    }
    assert!(matches!(
        keygen::generate_with_id(&session, spec, "with-id", b"fresh", KeyPolicy::default()),
        Err(HsmError::LabelTaken { .. })
    ));
    // The planted key is refused by the library too, with the reason.
    match keygen::find_existing(&session, spec, "planted") {
        Err(HsmError::KeyUnsuitable { reason, .. }) => {
            assert!(reason.contains("CKA_LOCAL"), "{reason}")
        }
        other => panic!("the planted key must be refused, got {other:?}"),
    }

    // The one-search index ceremony run uses refuses exactly the same, and
    // knows the keys generated through it without searching again.
    let mut index = keygen::TokenIndex::read(&session).unwrap();
    let indexed = |index: &mut keygen::TokenIndex, label: &str, id: &[u8]| {
        keygen::generate_indexed(&session, index, spec, label, id, KeyPolicy::default())
    };
    for (label, id) in [
        ("other", &b"intended-id"[..]),
        ("other", &b""[..]),
        ("other", &[7u8; 65][..]),
    ] {
        match indexed(&mut index, label, id) {
            Err(HsmError::BadKeyId { .. }) => {}
            other => panic!("CKA_ID {id:?} must be refused by the index, got {other:?}"),
        }
    }
    for label in ["with-id", "planted"] {
        assert!(matches!(
            indexed(&mut index, label, b"fresh"),
            Err(HsmError::LabelTaken { .. })
        ));
    }
    let fresh = indexed(&mut index, "indexed", b"fresh-id").unwrap();
    assert!(matches!(
        indexed(&mut index, "indexed", b"fresh-id-2"),
        Err(HsmError::LabelTaken { .. })
    ));
    assert!(matches!(
        indexed(&mut index, "indexed-2", b"fresh-id"),
        Err(HsmError::BadKeyId { .. })
    ));
    let again = keygen::find_existing_indexed(&session, &index, spec, "indexed").unwrap();
    assert_eq!(
        (again.handle, again.id),
        (fresh.handle, b"fresh-id".to_vec())
    );
    match keygen::find_existing_indexed(&session, &index, spec, "planted") {
        Err(HsmError::KeyUnsuitable { reason, .. }) => {
            assert!(reason.contains("CKA_LOCAL"), "{reason}")
        }
        other => panic!("the planted key must be refused through the index, got {other:?}"),
    }
    assert!(matches!(
        keygen::find_existing_indexed(&session, &index, spec, "nowhere"),
        Err(HsmError::KeyNotFound { .. })
    ));
}

/// `mechanisms` says whether the token keeps CKA_MODIFIABLE and CKA_COPYABLE false.
#[test]
fn mechanisms_reports_attribute_promises() {
    let t = SoftHsm::new("promises");
    let mut args = vec!["mechanisms".to_string()];
    args.extend(t.hsm_args());
    args.extend(
        [
            "--key-spec",
            "SYMMETRIC_DEFAULT",
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
        ]
        .map(String::from),
    );
    let o = run(t.airgap().args(&args));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("CKA_MODIFIABLE=false") && text.contains("CKA_COPYABLE=false"),
        "{text}"
    );
    args.push("--json".into());
    let o = run(t.airgap().args(&args));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &v["attribute_promises"]["Ok"];
    assert_eq!(p["unmodifiable"], true, "{v}");
    assert_eq!(p["uncopyable"], true, "{v}");
}

fn keys_with_pin_file(t: &SoftHsm, pin_file: &Path) -> Output {
    run(t.airgap().args([
        "keys",
        "--module",
        SOFTHSM_MODULE,
        "--token-label",
        &t.label,
        "--pin-file",
        pin_file.to_str().unwrap(),
    ]))
}

#[test]
fn pin_files_others_could_read_or_swap_are_refused() {
    let t = SoftHsm::new("pins");
    let pin = t.path("pin");
    std::fs::write(&pin, format!("{USER_PIN}\n")).unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = keys_with_pin_file(&t, &pin);
    assert!(o.status.success(), "{}", stderr(&o));

    // World-readable.
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = keys_with_pin_file(&t, &pin);
    refused_with(&o, "mode 0644");
    refused_with(&o, "chmod 600");

    // A symlink to a good PIN file.
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = t.path("pin-link");
    std::os::unix::fs::symlink(&pin, &link).unwrap();
    let o = keys_with_pin_file(&t, &link);
    refused_with(&o, "is a symbolic link");

    // Larger than any PIN.
    let big = t.path("pin-big");
    sparse(&big, HUGE);
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused_with(&keys_with_pin_file(&t, &big), "more than any PIN");
}

/// A wrap directory and a policy of `custodians` with threshold 1.
fn signed_setup(
    custodians: &[(&'static str, &str)],
) -> (SoftHsm, PathBuf, PathBuf, Vec<Custodian>) {
    let hsm = SoftHsm::new("signed");
    let kms = FakeKms::new(2048);
    wrap_ok(&hsm, &kms, "HMAC_256", "RSAES_OAEP_SHA_1", "webhooks");
    let out = hsm.path("webhooks.out");
    let mut cs = Vec::new();
    let mut entries = Vec::new();
    for (name, kind) in custodians {
        let (c, e) = Custodian::new(name, kind);
        cs.push(c);
        entries.push(e);
    }
    let policy = hsm.path("policy.json");
    write_policy(&policy, 1, &entries);
    (hsm, out, policy, cs)
}

/// Replace s by n - s in a DER ECDSA signature.
fn flip_s_der(der: &[u8]) -> Vec<u8> {
    use p256::elliptic_curve::bigint::Encoding as _;
    use p256::elliptic_curve::Curve as _;
    if let Ok(sig) = p256::ecdsa::Signature::from_der(der) {
        let raw = sig.to_bytes();
        let n = rsa::BigUint::from_bytes_be(&p256::NistP256::ORDER.to_be_bytes());
        let s = rsa::BigUint::from_bytes_be(&raw[32..]);
        let mut flipped = raw[..32].to_vec();
        let hi = (n - s).to_bytes_be();
        flipped.extend(std::iter::repeat_n(0u8, 32 - hi.len()));
        flipped.extend(hi);
        return p256::ecdsa::Signature::from_slice(&flipped)
            .unwrap()
            .to_der()
            .as_bytes()
            .to_vec();
    }
    let sig = p384::ecdsa::Signature::from_der(der).unwrap();
    let raw = sig.to_bytes();
    let n = rsa::BigUint::from_bytes_be(&p384::NistP384::ORDER.to_be_bytes());
    let s = rsa::BigUint::from_bytes_be(&raw[48..]);
    let mut flipped = raw[..48].to_vec();
    let hi = (n - s).to_bytes_be();
    flipped.extend(std::iter::repeat_n(0u8, 48 - hi.len()));
    flipped.extend(hi);
    p384::ecdsa::Signature::from_slice(&flipped)
        .unwrap()
        .to_der()
        .as_bytes()
        .to_vec()
}

#[test]
fn high_s_envelopes_are_refused() {
    let (hsm, out, policy, cs) = signed_setup(&[("alice", "ec-p256"), ("bob", "ec-p384")]);
    for c in &cs {
        let o = c.sign(&out, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        let env_path = out.join(format!("attestations/{}.dsse.json", c.name));
        let env: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&env_path).unwrap()).unwrap();
        let sig = b64()
            .decode(env["signatures"][0]["sig"].as_str().unwrap())
            .unwrap();
        // byok-airgap signed with low S.
        if c.name == "alice" {
            let s = p256::ecdsa::Signature::from_der(&sig).unwrap();
            assert!(
                s.normalize_s().is_none(),
                "the token's signature was normalized"
            );
        } else {
            let s = p384::ecdsa::Signature::from_der(&sig).unwrap();
            assert!(
                s.normalize_s().is_none(),
                "the token's signature was normalized"
            );
        }
        // Alone, the genuine signature verifies.
        let d = hsm.path(&format!("case-{}", c.name));
        copy_dir(&out, &d);
        for other in &cs {
            if other.name != c.name {
                let _ =
                    std::fs::remove_file(d.join(format!("attestations/{}.dsse.json", other.name)));
            }
        }
        let o = verify(&d, &policy);
        assert!(o.status.success(), "{}", stderr(&o));
        // The same signature with s replaced by n - s is equally valid ECDSA: refused.
        let mut high = env.clone();
        high["signatures"][0]["sig"] = b64().encode(flip_s_der(&sig)).into();
        std::fs::write(
            d.join(format!("attestations/{}.dsse.json", c.name)),
            serde_json::to_vec_pretty(&high).unwrap(),
        )
        .unwrap();
        let o = verify(&d, &policy);
        refused_with(
            &o,
            &format!(
                "attestation {}.dsse.json: signature by \"{}\" has a high S value",
                c.name, c.name
            ),
        );
    }
}

#[test]
fn oversized_files_from_the_media_are_refused_unread() {
    let (hsm, out, policy, cs) = signed_setup(&[("alice", "ec-p256")]);
    assert!(cs[0].sign(&out, &[]).status.success());
    assert!(verify(&out, &policy).status.success());

    // Policy.
    let big_policy = hsm.path("big-policy.json");
    sparse(&big_policy, HUGE);
    refused_with(
        &verify(&out, &big_policy),
        "more than any genuine custodian policy (262144 bytes): refused unread",
    );

    // Envelope.
    let d = hsm.path("case-envelope");
    copy_dir(&out, &d);
    sparse(&d.join("attestations/alice.dsse.json"), HUGE);
    refused_with(
        &verify(&d, &policy),
        "more than any genuine attestation envelope (67108864 bytes): refused unread",
    );

    // Manifest (any bundle file).
    let d = hsm.path("case-manifest");
    copy_dir(&out, &d);
    sparse(&d.join("manifest.json"), HUGE);
    refused_with(
        &verify(&d, &policy),
        "more than any genuine bundle file (65536 bytes): refused unread",
    );
    // Signing refuses it too.
    let o = cs[0].sign(&d, &[]);
    refused_with(&o, "more than any genuine bundle file");

    // Transcript.
    let d = hsm.path("case-transcript");
    copy_dir(&out, &d);
    sparse(&d.join("transcript.jsonl"), HUGE);
    refused_with(
        &verify(&d, &policy),
        "more than any genuine transcript (67108864 bytes): refused unread",
    );
}

/// A ceremony directory whose transcript stops before `ceremony-complete`,
/// as an interrupted `ceremony run` leaves it.
fn unfinished_ceremony(dir: &Path) {
    use byok_ceremony::ceremony::transcript::{Step, TranscriptWriter};
    use serde_json::json;
    let step = |name: &str, data| Step::from_parts(name.into(), data).unwrap();
    std::fs::create_dir(dir).unwrap();
    let start = json!({ "ceremony_id": "2026-11-prod", "purpose": "test",
        "ceremony_file_sha256": "00", "policy_sha256": "00", "plan": [],
        "confirmations": "none", "tool_version": "", "tool_binary_sha256": "" });
    let mut t =
        TranscriptWriter::create(&dir.join("transcript.jsonl"), step("ceremony-start", start))
            .unwrap();
    let token = json!({ "slot_id": 0, "label": "t", "serial": "s", "model": "m",
        "manufacturer": "m", "firmware": "1", "library": "l" });
    t.append(step(
        "hsm-session",
        json!({ "token": token, "resumed": false }),
    ))
    .unwrap();
    let key = json!({ "label": "prod-s3", "id_hex": "00", "key_spec": "SYMMETRIC_DEFAULT" });
    t.append(step("key-generated", key)).unwrap();
}

#[test]
fn unfinished_ceremony_is_signed_only_with_partial() {
    let (hsm, _, policy, cs) = signed_setup(&[("alice", "ec-p256")]);
    let dir = hsm.path("unfinished");
    unfinished_ceremony(&dir);
    let o = cs[0].sign(&dir, &[]);
    refused_with(
        &o,
        "ends with step \"key-generated\", not its closing entry",
    );
    refused_with(&o, "--partial");
    assert!(!dir.join("attestations").exists(), "nothing was signed");

    let o = cs[0].sign(&dir, &["--partial"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("attestations/alice.dsse.json")).unwrap())
            .unwrap();
    let payload: serde_json::Value =
        serde_json::from_slice(&b64().decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(payload["partial"], true, "{payload}");
    let o = verify(&dir, &policy);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["complete"], false, "{v}");

    // A signature over the unfinished run that does not say so (as older
    // versions made them) is refused: replay the payload without `partial`.
    let d = hsm.path("unfinished-unacknowledged");
    copy_dir(&dir, &d);
    std::fs::remove_dir_all(d.join("attestations")).unwrap();
    let mut quiet = payload.clone();
    quiet.as_object_mut().unwrap().remove("partial");
    let body = serde_json::to_vec(&quiet).unwrap();
    let mut forged = env.clone();
    forged["payload"] = b64().encode(&body).into();
    std::fs::create_dir(d.join("attestations")).unwrap();
    std::fs::write(
        d.join("attestations/alice.dsse.json"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    refused_with(
        &verify(&d, &policy),
        "signs a transcript that does not record a finished run, without saying so",
    );

    // A finished wrap needs no --partial, and its payload says nothing about it.
    let out = hsm.path("webhooks.out");
    assert!(cs[0].sign(&out, &[]).status.success());
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("attestations/alice.dsse.json")).unwrap())
            .unwrap();
    let payload: serde_json::Value =
        serde_json::from_slice(&b64().decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    assert!(payload.get("partial").is_none(), "{payload}");
}

#[test]
fn custodian_names_are_path_safe() {
    let (hsm, out, _, cs) = signed_setup(&[("alice", "ec-p256")]);
    for bad in ["../alice", "alice/x", ".", "a b"] {
        let mut args = vec![
            "ceremony".to_string(),
            "sign".into(),
            out.to_str().unwrap().into(),
        ];
        args.extend(cs[0].card.hsm_args());
        args.extend(["--custodian", bad, "--key-label", "sig", "--yes"].map(String::from));
        let o = run(cs[0].card.airgap().args(args));
        refused_with(&o, "custodian name");
    }
    assert!(!out.join("attestations").exists());
    // A policy naming a custodian with a path in the name is refused.
    let p = hsm.path("bad-policy.json");
    write_policy(
        &p,
        1,
        &[serde_json::json!({ "name": "../evil", "public_key": "AAAA" })],
    );
    refused_with(
        &verify(&out, &p),
        "custodian name \"../evil\" is not allowed",
    );
}

/// A token that cannot keep a promise is used, and says so: NSS softoken
/// refuses CKA_COPYABLE on token objects (the key is generated without it and
/// the manifest records `copyable: true`), lets a session key marked
/// uncopyable be copied (`mechanisms` reports it), and reports CKA_LOCAL false
/// even for keys it generated, so `--existing` cannot tell them from imported
/// ones and refuses.
#[test]
fn nss_broken_promises_are_visible() {
    let db = NssDb::new();
    let kms = FakeKms::new(2048);
    let params = db.path("p.json");
    kms.write_params(&params, 600);
    let out = db.path("k.out");
    let o = run(db.airgap().args(wrap_args(
        &db,
        &params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_256",
        "nss-key",
        &kms.fingerprint(),
        &out,
    )));
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let p = &manifest["hsm_key"]["protection"];
    assert_eq!(p["modifiable"], false, "{p}");
    assert_eq!(p["copyable"], true, "{p}");

    let mut args = vec!["mechanisms".to_string()];
    args.extend(db.hsm_args());
    args.extend(
        [
            "--key-spec",
            "SYMMETRIC_DEFAULT",
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_256",
        ]
        .map(String::from),
    );
    let o = run(db.airgap().args(&args));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("CKA_COPYABLE=false") && l.contains("NOT honoured")),
        "{text}"
    );

    let again = db.path("k-again.out");
    let mut args = wrap_args(
        &db,
        &params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_256",
        "nss-key",
        &kms.fingerprint(),
        &again,
    );
    args.push("--existing".into());
    refused_with(&run(db.airgap().args(args)), "CKA_LOCAL is not true");
}
