//! A whole ceremony on SoftHSM 2.7.0 through its native `CKM_RSA_AES_KEY_WRAP`:
//! every RSA and EC key spec, under RSA 2048/3072/4096 wrapping keys, run,
//! unwrapped in software, signed and verified.
//!
//! The module is given both as the ceremony file's `hsm.module` and as
//! `BYOK_PKCS11_MODULE` (equal), so the test holds whichever of the two
//! `ceremony run` takes the module from.

mod common;

use std::process::Command;

use common::*;

const KEYS: [(&str, &str, usize); 7] = [
    ("rsa-2048", "RSA_2048", 2048),
    ("rsa-3072", "RSA_3072", 3072),
    ("rsa-4096", "RSA_4096", 4096),
    ("p256", "ECC_NIST_P256", 4096),
    ("p384", "ECC_NIST_P384", 2048),
    ("p521", "ECC_NIST_P521", 3072),
    ("k1", "ECC_SECG_P256K1", 2048),
];

#[test]
fn ceremony_run_through_the_native_mechanism() {
    let hsm = SoftHsm::v27("ceremony27");
    let card = SoftHsm::v27("card27");
    let module = hsm.module.to_str().unwrap().to_string();
    let dir = hsm.dir.path();
    std::fs::create_dir(dir.join("params")).unwrap();

    let mut a = vec!["custodian".to_string(), "init".into()];
    a.extend(card.hsm_args());
    a.extend(["--name", "alice", "--key-label", "sig", "--json"].map(String::from));
    let o = run(card.airgap().args(a));
    assert!(o.status.success(), "{}", stderr(&o));
    let entry = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["entry"].clone();
    std::fs::write(
        dir.join("policy.json"),
        serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [entry]}).to_string(),
    )
    .unwrap();

    let mut kms = Vec::new();
    let mut keys = Vec::new();
    for (label, spec, bits) in KEYS {
        let k = FakeKms::new(bits);
        let rel = format!("params/{label}.json");
        k.write_params(&dir.join(&rel), 600);
        keys.push(serde_json::json!({"label": label, "key_spec": spec, "source": "generate", "targets": [
            {"name": "eu-west-1", "params": rel, "wrapping_algorithm": "RSA_AES_KEY_WRAP_SHA_1", "wrapping_key_sha256": k.fingerprint()}
        ]}));
        kms.push(k);
    }
    let file = dir.join("ceremony.json");
    std::fs::write(
        &file,
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "byok-ceremony/ceremony/v1",
            "ceremony_id": "2026-12-native",
            "purpose": "Export RSA and EC keys with CKM_RSA_AES_KEY_WRAP",
            "hsm": {"module": module, "token_label": "ceremony27"},
            "policy": "policy.json",
            "keys": keys,
        }))
        .unwrap(),
    )
    .unwrap();

    let out = dir.join("out");
    let o = run(hsm.airgap().env("BYOK_PKCS11_MODULE", &module).args([
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

    for ((label, spec, _), k) in KEYS.iter().zip(&kms) {
        let bundle = out.join(label).join("eu-west-1");
        let token = std::fs::read(bundle.join("ImportToken.bin")).unwrap();
        let m = check_output(k, &bundle, spec, "RSA_AES_KEY_WRAP_SHA_1", &token);
        assert_eq!(
            m["wrap_method"], "CKM_RSA_AES_KEY_WRAP (AES-256, OAEP SHA-1, MGF1-SHA-1, empty label)",
            "{label}"
        );
        assert!(
            m["token"]["library"].as_str().unwrap().contains("2.7"),
            "{label}: {}",
            m["token"]
        );
    }

    let mut a = vec![
        "ceremony".to_string(),
        "sign".into(),
        out.to_str().unwrap().into(),
    ];
    a.extend(card.hsm_args());
    a.extend(["--custodian", "alice", "--key-label", "sig", "--yes"].map(String::from));
    let o = run(card.airgap().args(a));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(Command::new(env!("CARGO_BIN_EXE_byok-airgap")).args([
        "ceremony",
        "verify",
        out.to_str().unwrap(),
        "--policy",
        dir.join("policy.json").to_str().unwrap(),
        "--json",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["signers"], serde_json::json!(["alice"]));
    assert_eq!(v["outputs"].as_array().unwrap().len(), KEYS.len() * 4 + 1);
}
