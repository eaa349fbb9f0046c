//! byok-bastion against LocalStack KMS (a real unwrapping peer on loopback):
//! prepare → byok-airgap wrap on SoftHSM2 → two custodians sign → import →
//! verify proves KMS holds the HSM's key; and every refusal sends nothing.
#![cfg(feature = "bastion")]

mod common;
#[path = "common/localstack.rs"]
mod localstack;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use localstack::*;

#[test]
fn prepare_wrap_sign_import_verify_against_localstack() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("bastion-e2e");
    let (alice_t, alice) = custodian_card("alice");
    let (bob_t, bob) = custodian_card("bob");
    let (_carol_t, carol) = custodian_card("carol");
    let policy = hsm.path("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 2, "custodians": [alice, bob, carol]}).to_string(),
    )
    .unwrap();

    for (spec, label) in [
        ("SYMMETRIC_DEFAULT", "s3-prod"),
        ("HMAC_256", "webhooks-prod"),
    ] {
        let (params, arn, fp) = prepare(&ls, hsm.dir.path(), spec, "RSAES_OAEP_SHA_1");
        // The bastion's file is one byok-airgap reads, and names its algorithm.
        let out = hsm.path(label);
        bastion_wrap(&hsm, &params, spec, label, &fp, &out);

        let import = |extra: &[&str]| {
            let mut a = vec![
                "import".to_string(),
                out.to_str().unwrap().into(),
                "--policy".into(),
                policy.to_str().unwrap().into(),
                "--params".into(),
                params.to_str().unwrap().into(),
                "--no-expiry".into(),
            ];
            a.extend(extra.iter().map(|s| s.to_string()));
            run(ls.bastion().args(a))
        };
        // Unsigned, then M-1 signatures: refused before anything is sent.
        let o = import(&[]);
        assert!(
            !o.status.success() && stderr(&o).contains("only 0 of the 2 custodians"),
            "{}",
            stderr(&o)
        );
        assert!(
            !stderr(&o).contains("KMS endpoint"),
            "nothing may reach KMS: {}",
            stderr(&o)
        );
        sign(&alice_t, "alice", &out);
        let o = import(&[]);
        assert!(
            !o.status.success() && stderr(&o).contains("only 1 of the 2"),
            "{}",
            stderr(&o)
        );
        sign(&bob_t, "bob", &out);

        let o = ok(import(&["--json"]), "import");
        let receipt: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(receipt["key_arn"], arn);
        assert_eq!(receipt["signers"], serde_json::json!(["alice", "bob"]));
        // Safe to re-run: reported, not repeated.
        let o = ok(import(&[]), "second import");
        assert!(stderr(&o).contains("already imported"), "{}", stderr(&o));

        let o = ok(
            run(ls.bastion().args([
                "verify",
                out.to_str().unwrap(),
                "--policy",
                policy.to_str().unwrap(),
                "--json",
            ])),
            "verify",
        );
        let proof: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let method = proof["method"].as_str().unwrap();
        if spec == "HMAC_256" {
            assert!(
                method.starts_with("GenerateMac(HMAC_SHA_256) equals the HSM's HMAC"),
                "{method}"
            );
        } else {
            assert_eq!(method, "Encrypt/Decrypt round trip works");
        }
        // Proven, with the material this bastion's own ImportKeyMaterial returned.
        assert_eq!(proof["verdict"], "proven", "{proof}");
        assert_eq!(
            proof["imported_key_material_id"], receipt["key_material_id"],
            "{proof}"
        );
        if spec == "SYMMETRIC_DEFAULT" {
            assert!(
                proof["statement"].as_str().unwrap().starts_with(
                    "KMS holds the material this bastion imported from this signed bundle"
                ),
                "{proof}"
            );
            assert_eq!(proof["current_key_material_id"], receipt["key_material_id"]);
        }
    }
}

#[test]
fn refusals_send_nothing_and_mismatches_are_caught() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("bastion-refusals");
    let (alice_t, alice) = custodian_card("alice");
    let (bob_t, bob) = custodian_card("bob");
    let (mallory_t, _) = custodian_card("mallory");
    let policy = hsm.path("policy.json");
    std::fs::write(&policy, serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 2, "custodians": [alice, bob]}).to_string()).unwrap();

    let (params, _arn, fp) = prepare(&ls, hsm.dir.path(), "HMAC_256", "RSAES_OAEP_SHA_1");
    let out = hsm.path("k");
    bastion_wrap(&hsm, &params, "HMAC_256", "k", &fp, &out);
    sign(&alice_t, "alice", &out);
    sign(&bob_t, "bob", &out);

    let import = |dir: &Path, params: &Path| {
        run(ls.bastion().args([
            "import",
            dir.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--params",
            params.to_str().unwrap(),
            "--no-expiry",
        ]))
    };
    let refused = |o: Output, needle: &str| {
        assert!(!o.status.success(), "expected refusal {needle:?}");
        assert!(
            stderr(&o).contains(needle),
            "expected {needle:?} in:\n{}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("imported into"), "{}", stderr(&o));
    };

    // A signer outside the policy.
    let d = hsm.path("k-outsider");
    copy_dir(&out, &d);
    sign(&mallory_t, "mallory", &d);
    refused(import(&d, &params), "not in the policy");

    // A flipped byte in the blob.
    let d = hsm.path("k-flipped");
    copy_dir(&out, &d);
    let mut blob = std::fs::read(d.join("EncryptedKeyMaterial.bin")).unwrap();
    blob[0] ^= 0x80;
    std::fs::write(d.join("EncryptedKeyMaterial.bin"), blob).unwrap();
    refused(import(&d, &params), "output EncryptedKeyMaterial.bin");

    // Expired parameters.
    let mut p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&params).unwrap()).unwrap();
    p["ParametersValidTo"] = "2020-01-01T00:00:00Z".into();
    let expired = hsm.path("expired.json");
    std::fs::write(&expired, p.to_string()).unwrap();
    refused(import(&out, &expired), "expired");

    // A non-HTTPS, non-loopback endpoint is refused.
    let arn = p["KeyId"].as_str().unwrap().to_string();
    let o = run(ls
        .bastion()
        .env("AWS_ENDPOINT_URL_KMS", "http://kms.example.com")
        .args([
            "prepare",
            "--key",
            &arn,
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
            "--out-dir",
            hsm.path("x").to_str().unwrap(),
        ]));
    refused(o, "only HTTPS, or plain HTTP on loopback");

    // The good bundle imports.
    ok(import(&out, &params), "import");

    // A token from a different prepare for the same key is refused.
    let other_dir = hsm.path("other-params");
    ok(
        run(ls.bastion().args([
            "prepare",
            "--key",
            &arn,
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
            "--out-dir",
            other_dir.to_str().unwrap(),
        ])),
        "second prepare",
    );
    let other = std::fs::read_dir(&other_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    refused(import(&out, &other), "wrapped for another prepare");

    // A different HSM key wrapped for the same KMS key, signed but not imported:
    // verify proves KMS does not hold it.
    let other_params: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    let other_fp = {
        use base64::Engine as _;
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(
            b64()
                .decode(other_params["PublicKey"].as_str().unwrap())
                .unwrap(),
        ))
    };
    let k2 = hsm.path("k2");
    bastion_wrap(&hsm, &other, "HMAC_256", "k2", &other_fp, &k2);
    sign(&alice_t, "alice", &k2);
    sign(&bob_t, "bob", &k2);
    let o = run(ls.bastion().args([
        "verify",
        k2.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]));
    refused(o, "does NOT hold the HSM's key");
    ok(
        run(ls.bastion().args([
            "verify",
            out.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ])),
        "verify of the imported key",
    );
}

#[test]
fn rotation_with_new_key_material() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("bastion-rotation");
    let (alice_t, alice) = custodian_card("alice");
    let policy = hsm.path("policy.json");
    std::fs::write(&policy, serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [alice]}).to_string()).unwrap();

    let wrap_sign = |params: &Path, fp: &str, label: &str| -> PathBuf {
        let out = hsm.path(label);
        bastion_wrap(&hsm, params, "SYMMETRIC_DEFAULT", label, fp, &out);
        sign(&alice_t, "alice", &out);
        out
    };
    let import = |dir: &Path, params: &Path, extra: &[&str]| {
        let mut a = vec![
            "import".to_string(),
            dir.to_str().unwrap().into(),
            "--policy".into(),
            policy.to_str().unwrap().into(),
            "--params".into(),
            params.to_str().unwrap().into(),
            "--no-expiry".into(),
            "--json".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        ok(run(ls.bastion().args(a)), "import")
    };

    // First material.
    let (params, arn, fp) = prepare(
        &ls,
        hsm.dir.path(),
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_256",
    );
    // SoftHSM2 cannot do OAEP SHA-256: the air gap refuses cleanly, nothing is written.
    let mut a = vec!["wrap".to_string()];
    a.extend(hsm.hsm_args());
    a.extend(
        [
            "--params",
            params.to_str().unwrap(),
            "--key-spec",
            "SYMMETRIC_DEFAULT",
            "--label",
            "refused",
            "--expect-wrapping-key-sha256",
            &fp,
            "--out",
            hsm.path("refused").to_str().unwrap(),
        ]
        .map(String::from),
    );
    let o = run(hsm.airgap().args(a));
    assert!(
        !o.status.success() && stderr(&o).contains("SHA-1"),
        "{}",
        stderr(&o)
    );
    assert!(!hsm.path("refused").exists());

    let params_dir = hsm.path("p1");
    let o = ok(
        run(ls.bastion().args([
            "prepare",
            "--key",
            &arn,
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
            "--out-dir",
            params_dir.to_str().unwrap(),
            "--json",
        ])),
        "prepare",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p1 = PathBuf::from(v[0]["params_file"].as_str().unwrap());
    let v1 = wrap_sign(&p1, v[0]["wrapping_key_sha256"].as_str().unwrap(), "s3-v1");
    import(&v1, &p1, &[]);

    // Data encrypted under the first material.
    let ct = hsm.path("old.ct");
    ok(
        run(ls.peer().args([
            "encrypt-decrypt",
            "--key-id",
            &arn,
            "--plaintext-hex",
            "00112233",
            "--ciphertext-out",
            ct.to_str().unwrap(),
        ])),
        "encrypt",
    );

    // Second ceremony: new material for the same KMS key, imported as NEW_KEY_MATERIAL, then rotated.
    let params_dir = hsm.path("p2");
    let o = ok(
        run(ls.bastion().args([
            "prepare",
            "--key",
            &arn,
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
            "--out-dir",
            params_dir.to_str().unwrap(),
            "--json",
        ])),
        "prepare 2",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p2 = PathBuf::from(v[0]["params_file"].as_str().unwrap());
    let v2 = wrap_sign(&p2, v[0]["wrapping_key_sha256"].as_str().unwrap(), "s3-v2");
    let o = import(&v2, &p2, &["--new-key-material"]);
    let receipt: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(receipt["import_type"], "NEW_KEY_MATERIAL");
    let o = ok(
        run(ls
            .bastion()
            .args(["rotate", v2.to_str().unwrap(), "--json", "--policy"])
            .arg(&policy)),
        "rotate",
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(r["after"], r["before"], "current key material changed: {r}");
    if !receipt["key_material_id"].is_null() {
        assert_eq!(r["after"], receipt["key_material_id"]);
    }
    // Old ciphertext still decrypts; the new material works.
    let o = ok(
        run(ls.peer().args([
            "decrypt",
            "--key-id",
            &arn,
            "--ciphertext",
            ct.to_str().unwrap(),
        ])),
        "decrypt old",
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("00112233"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    ok(
        run(ls.bastion().args([
            "verify",
            v2.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ])),
        "verify v2",
    );
    // Rotating again is a no-op report, not a second rotation.
    let o = ok(
        run(ls
            .bastion()
            .args(["rotate", v2.to_str().unwrap(), "--json", "--policy"])
            .arg(&policy)),
        "rotate again",
    );
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["after"], r["after"]);
}

#[test]
fn status_flags_old_material_and_pending_import() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("bastion-status");
    let (alice_t, alice) = custodian_card("alice");
    let policy = hsm.path("policy.json");
    std::fs::write(&policy, serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [alice]}).to_string()).unwrap();
    let (params, imported, fp) = prepare(&ls, hsm.dir.path(), "HMAC_256", "RSAES_OAEP_SHA_1");
    let out = hsm.path("k");
    bastion_wrap(&hsm, &params, "HMAC_256", "k", &fp, &out);
    sign(&alice_t, "alice", &out);
    ok(
        run(ls.bastion().args([
            "import",
            out.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--params",
            params.to_str().unwrap(),
            "--no-expiry",
        ])),
        "import",
    );
    let (_, pending, _) = prepare(&ls, hsm.dir.path(), "SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1");

    let status = |max_age: &str| {
        run(ls.bastion().args([
            "status",
            "--key",
            &imported,
            "--key",
            &pending,
            "--max-age-days",
            max_age,
            "--json",
        ]))
    };
    let verdicts = |o: &Output| -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["key_arn"].as_str().unwrap().to_string(),
                    k["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // Material older than the maximum age (0 days: anything is too old), and a key never imported.
    let o = status("0");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(
        verdicts(&o),
        vec![
            (imported.clone(), "OUT_OF_POLICY".into()),
            (pending.clone(), "PENDING_IMPORT".into())
        ]
    );
    // LocalStack does not emulate ListKeyRotations: the report says its age
    // comes from the key's creation date, and why, instead of hiding it.
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["age_source"], "key-creation-date", "{v}");
    assert!(
        v[0]["rotations_unavailable"]
            .as_str()
            .is_some_and(|e| e.contains("ListKeyRotations")),
        "{v}"
    );
    assert!(v[0]["pending_material"].is_null(), "{v}");
    // Within a year's policy the imported key is fine; the pending one still needs action.
    let o = run(ls.bastion().args([
        "status",
        "--key",
        &imported,
        "--max-age-days",
        "365",
        "--json",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(verdicts(&o), vec![(imported.clone(), "OK".into())]);
    // Without --key: every EXTERNAL key of the account and Region, as a table.
    let o = run(ls.bastion().args(["status", "--max-age-days", "365"]));
    assert_eq!(o.status.code(), Some(3));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("PENDING_IMPORT") && table.contains(&pending) && table.contains(&imported),
        "{table}"
    );
}

#[test]
fn ceremony_directory_imports_per_target() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("ceremony-bastion");
    let (alice_t, alice) = custodian_card("alice");
    let policy = hsm.path("policy.json");
    std::fs::write(&policy, serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [alice]}).to_string()).unwrap();
    // One HMAC key imported into two KMS keys ("two Regions").
    let (p1, arn1, fp1) = prepare(&ls, hsm.dir.path(), "HMAC_256", "RSAES_OAEP_SHA_1");
    let (p2, arn2, fp2) = prepare(&ls, &hsm.path("second"), "HMAC_256", "RSAES_OAEP_SHA_1");
    // Parameters paths in a ceremony file are relative to it.
    let rel = |p: &Path| p.strip_prefix(hsm.dir.path()).unwrap().to_path_buf();
    let (r1, r2) = (rel(&p1), rel(&p2));
    let file = hsm.path("ceremony.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "format": "byok-ceremony/ceremony/v1", "ceremony_id": "webhooks-2026-11", "purpose": "two Regions",
            "hsm": {"module": SOFTHSM_MODULE, "token_label": "ceremony-bastion"}, "policy": "policy.json",
            "keys": [{"label": "webhooks", "key_spec": "HMAC_256", "source": "generate", "targets": [
                {"name": "region-a", "params": r1, "wrapping_algorithm": "RSAES_OAEP_SHA_1", "wrapping_key_sha256": fp1},
                {"name": "region-b", "params": r2, "wrapping_algorithm": "RSAES_OAEP_SHA_1", "wrapping_key_sha256": fp2}]}]
        })
        .to_string(),
    )
    .unwrap();
    let out = hsm.path("out");
    // The bastion computes the parameters digest of its own copy of a
    // hand-written ceremony file, from parameters it fetched itself.
    let o = ok(
        run(ls
            .bastion()
            .args(["params-digest", "--ceremony", file.to_str().unwrap()])),
        "params-digest",
    );
    let digest = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(digest, params_digest(&file));
    assert!(
        stderr(&o).contains("must not travel on the media"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("KMS endpoint"),
        "no KMS call: {}",
        stderr(&o)
    );
    ok(
        run(hsm.airgap().args([
            "ceremony",
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--pin-env",
            "BYOK_TEST_PIN",
            "--non-interactive",
            "--expect-parameters-digest",
            &digest,
        ])),
        "ceremony run",
    );
    // Parameters this bastion did not fetch get no digest.
    let foreign = FakeKms::new(2048);
    foreign.write_params(&hsm.path("foreign.json"), 600);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    v["keys"][0]["targets"][1]["params"] = "foreign.json".into();
    let foreign_file = hsm.path("foreign-ceremony.json");
    std::fs::write(&foreign_file, v.to_string()).unwrap();
    let o = run(ls.bastion().args([
        "params-digest",
        "--ceremony",
        foreign_file.to_str().unwrap(),
    ]));
    assert!(
        !o.status.success() && stderr(&o).contains("were not fetched by this bastion"),
        "{}",
        stderr(&o)
    );
    sign(&alice_t, "alice", &out);
    for (target, params, arn) in [
        ("webhooks/region-a", &p1, &arn1),
        ("webhooks/region-b", &p2, &arn2),
    ] {
        let o = ok(
            run(ls.bastion().args([
                "import",
                out.to_str().unwrap(),
                "--target",
                target,
                "--policy",
                policy.to_str().unwrap(),
                "--params",
                params.to_str().unwrap(),
                "--no-expiry",
                "--json",
            ])),
            "import",
        );
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(&r["key_arn"], arn);
        let o = ok(
            run(ls.bastion().args([
                "verify",
                out.to_str().unwrap(),
                "--target",
                target,
                "--policy",
                policy.to_str().unwrap(),
            ])),
            "verify",
        );
        assert!(
            stderr(&o).contains("GenerateMac(HMAC_SHA_256) equals the HSM's HMAC"),
            "{}",
            stderr(&o)
        );
    }
    // A target's parameters are not interchangeable with another's.
    let o = run(ls.bastion().args([
        "import",
        out.to_str().unwrap(),
        "--target",
        "webhooks/region-a",
        "--policy",
        policy.to_str().unwrap(),
        "--params",
        p2.to_str().unwrap(),
        "--no-expiry",
    ]));
    assert!(!o.status.success());
}

/// EC and RSA keys go through RSA_AES_KEY_WRAP_SHA_256, which SoftHSM2 cannot
/// produce (OAEP SHA-1 only) and LocalStack accepts: they come from NSS softoken.
#[test]
fn asymmetric_keys_from_nss_through_rsa_aes_key_wrap_sha256() {
    let ls = LocalStack::start();
    let nss = NssDb::new();
    let (alice_t, alice) = custodian_card("alice");
    let policy = nss.path("policy.json");
    std::fs::write(&policy, serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [alice]}).to_string()).unwrap();
    for (spec, label) in [
        ("ECC_NIST_P256", "signing-p256"),
        ("RSA_2048", "signing-rsa"),
    ] {
        let (params, arn, fp) = prepare(&ls, nss.dir.path(), spec, "RSA_AES_KEY_WRAP_SHA_256");
        let out = nss.path(label);
        bastion_wrap(&nss, &params, spec, label, &fp, &out);
        sign(&alice_t, "alice", &out);
        let o = ok(
            run(ls.bastion().args([
                "import",
                out.to_str().unwrap(),
                "--policy",
                policy.to_str().unwrap(),
                "--params",
                params.to_str().unwrap(),
                "--no-expiry",
                "--json",
            ])),
            "import",
        );
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["key_arn"], arn);
        let o = ok(
            run(ls.bastion().args([
                "verify",
                out.to_str().unwrap(),
                "--policy",
                policy.to_str().unwrap(),
            ])),
            "verify",
        );
        assert!(
            stderr(&o).contains("GetPublicKey equals the HSM's public key"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn alias_rotation_moves_only_to_a_proven_key_then_retires_the_old_one() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("alias-rotation");
    let (alice_t, alice) = custodian_card("alice");
    let policy = hsm.path("policy.json");
    std::fs::write(&policy, serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [alice]}).to_string()).unwrap();
    let bundle = |name: &str, import: bool| -> (PathBuf, String) {
        let (params, arn, fp) = prepare(
            &ls,
            &hsm.path(&format!("p-{name}")),
            "HMAC_256",
            "RSAES_OAEP_SHA_1",
        );
        let out = hsm.path(name);
        bastion_wrap(&hsm, &params, "HMAC_256", name, &fp, &out);
        sign(&alice_t, "alice", &out);
        if import {
            ok(
                run(ls.bastion().args([
                    "import",
                    out.to_str().unwrap(),
                    "--policy",
                    policy.to_str().unwrap(),
                    "--params",
                    params.to_str().unwrap(),
                    "--no-expiry",
                ])),
                "import",
            );
        }
        (out, arn)
    };
    let move_alias = |dir: &Path| {
        run(ls.bastion().args([
            "move-alias",
            dir.to_str().unwrap(),
            "--alias",
            "alias/webhooks",
            "--policy",
            policy.to_str().unwrap(),
            "--json",
        ]))
    };
    let (v1, arn1) = bundle("webhooks-v1", true);
    let o = ok(move_alias(&v1), "first alias");
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["key"], arn1);
    assert!(m["previous_key"].is_null());

    // A signed bundle whose key was never imported: the alias does not move.
    let (unproven, _) = bundle("webhooks-unproven", false);
    let o = move_alias(&unproven);
    assert!(
        !o.status.success() && stderr(&o).contains("the alias stays where it is"),
        "{}",
        stderr(&o)
    );

    let (v2, arn2) = bundle("webhooks-v2", true);
    let o = ok(move_alias(&v2), "move alias");
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["key"], arn2);
    assert_eq!(
        m["previous_key"].as_str().unwrap(),
        arn1.rsplit('/').next().unwrap()
    );
    // Both keys are tagged: the new one with its ceremony and what it replaces,
    // the old one with what replaced it.
    let tags = |arn: &str| -> serde_json::Value {
        let o = ok(
            run(ls.peer().args(["list-tags", "--key-id", arn])),
            "list-tags",
        );
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (id1, id2) = (
        arn1.rsplit('/').next().unwrap(),
        arn2.rsplit('/').next().unwrap(),
    );
    let new_tags = tags(&arn2);
    assert!(
        new_tags["byok:ceremony"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{new_tags}"
    );
    assert_eq!(new_tags["byok:replaces"], id1, "{new_tags}");
    assert!(
        new_tags["byok:alias-moved-at"]
            .as_str()
            .unwrap()
            .starts_with("20"),
        "{new_tags}"
    );
    let old_tags = tags(&arn1);
    assert_eq!(old_tags["byok:replaced-by"], id2, "{old_tags}");

    // The key the alias points to cannot be retired; the old one can, after a grace period.
    let o = run(ls
        .bastion()
        .args(["retire", "--key", &arn2, "--grace-days", "7"]));
    assert!(
        !o.status.success() && stderr(&o).contains("alias/webhooks still points to"),
        "{}",
        stderr(&o)
    );
    let o = run(ls
        .bastion()
        .args(["retire", "--key", &arn1, "--grace-days", "3"]));
    assert!(
        !o.status.success() && stderr(&o).contains("7 to 30"),
        "{}",
        stderr(&o)
    );
    let o = ok(
        run(ls
            .bastion()
            .args(["retire", "--key", &arn1, "--grace-days", "7", "--json"])),
        "retire",
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["key"], arn1);
    let d = ok(
        run(ls.peer().args(["describe", "--key-id", &arn1])),
        "describe old",
    );
    let meta: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap();
    assert_eq!(meta["KeyState"], "PendingDeletion", "{meta}");
}

/// A whole batch across two Regions from one ceremony file: prepare fills
/// in the draft (creating the keys it lacks), the air-gapped side runs it,
/// then one command imports every bundle (a bundle imported earlier is
/// reported, not repeated), one proves them all, and a second ceremony
/// rotates the symmetric key in both Regions with NEW_KEY_MATERIAL.
#[test]
fn whole_ceremony_across_two_regions_in_one_command_each() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("batch-regions");
    let (alice_t, alice) = custodian_card("alice");
    std::fs::write(hsm.path("policy.json"), serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [alice]}).to_string()).unwrap();
    let policy = hsm.path("policy.json");
    // An existing EXTERNAL key in eu-west-1, named by key ID and Region.
    let eu_orders = String::from_utf8(
        ok(
            run(ls.peer().args([
                "--region",
                "eu-west-1",
                "create-key",
                "--key-spec",
                "SYMMETRIC_DEFAULT",
            ])),
            "create-key",
        )
        .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let target = |name: &str, params: &str, extra: serde_json::Value| {
        let mut t = serde_json::json!({"name": name, "params": params, "wrapping_algorithm": "RSAES_OAEP_SHA_1"});
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    let draft = |id: &str, keys: serde_json::Value| {
        serde_json::json!({
            "format": "byok-ceremony/ceremony/v1", "ceremony_id": id, "purpose": "batch test",
            "hsm": {"module": SOFTHSM_MODULE, "token_label": "batch-regions"}, "policy": "policy.json",
            "keys": keys
        })
        .to_string()
    };
    std::fs::write(
        hsm.path("draft.json"),
        draft(
            "2026-11-batch",
            serde_json::json!([
                {"label": "orders", "key_spec": "SYMMETRIC_DEFAULT", "source": "generate", "targets": [
                    target("us-east-1", "params/orders-us-east-1.json", serde_json::json!({})),
                    target("eu-west-1", "params/orders-eu-west-1.json", serde_json::json!({"kms_key": eu_orders, "region": "eu-west-1"}))]},
                {"label": "webhooks", "key_spec": "HMAC_256", "source": "generate", "targets": [
                    target("us-east-1", "params/webhooks-us-east-1.json", serde_json::json!({"wrapping_key_spec": "RSA_3072"})),
                    target("eu-west-1", "params/webhooks-eu-west-1.json", serde_json::json!({"region": "eu-west-1"}))]}
            ]),
        ),
    )
    .unwrap();
    let prepare = |draft: &str, out: &str, extra: &[&str]| {
        let mut a = vec![
            "prepare".to_string(),
            "--ceremony".into(),
            hsm.path(draft).to_str().unwrap().into(),
            "--out".into(),
            hsm.path(out).to_str().unwrap().into(),
            "--json".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        run(ls.bastion().args(a))
    };
    // Targets without a key are refused unless asked to create them; nothing reaches KMS.
    let o = prepare("draft.json", "ceremony.json", &[]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("orders/us-east-1 names no kms_key")
            && stderr(&o).contains("--create-missing")
            && !stderr(&o).contains("KMS endpoint"),
        "{}",
        stderr(&o)
    );
    // The air-gapped side refuses the draft itself.
    let o = run(hsm
        .airgap()
        .args(["ceremony", "plan", hsm.path("draft.json").to_str().unwrap()]));
    assert!(
        !o.status.success() && stderr(&o).contains("run `byok-bastion prepare --ceremony`"),
        "{}",
        stderr(&o)
    );
    let o = ok(
        prepare(
            "draft.json",
            "ceremony.json",
            &["--create-missing", "--tag", "team=payments"],
        ),
        "prepare --ceremony",
    );
    let prepared = json(&o);
    assert_eq!(prepared.as_array().unwrap().len(), 4, "{prepared}");
    // prepare --ceremony prints the parameters digest the custodians will type.
    let d = params_digest(&hsm.path("ceremony.json"));
    assert!(
        stderr(&o).contains("Parameters digest")
            && stderr(&o).contains(&format!("{} {}", &d[..4], &d[4..8])),
        "{}",
        stderr(&o)
    );
    // One client per Region, each announced once.
    assert_eq!(
        stderr(&o).matches("KMS endpoint: ").count(),
        2,
        "{}",
        stderr(&o)
    );
    let mut arns = std::collections::BTreeMap::new();
    for p in prepared.as_array().unwrap() {
        let (label, name) = (p["label"].as_str().unwrap(), p["target"].as_str().unwrap());
        let arn = p["key_arn"].as_str().unwrap().to_string();
        assert!(arn.contains(&format!(":{name}:")), "{p}");
        assert_eq!(p["region"], name);
        assert_eq!(
            p["created"],
            !(label == "orders" && name == "eu-west-1"),
            "{p}"
        );
        arns.insert(format!("{label}/{name}"), arn);
    }
    assert!(arns["orders/eu-west-1"].ends_with(&eu_orders));
    // Created keys are tagged with their ceremony and target (and --tag); named keys are left alone.
    let tags = |arn: &str| -> serde_json::Value {
        json(&ok(
            run(ls.peer().args([
                "--region",
                arn.split(':').nth(3).unwrap(),
                "list-tags",
                "--key-id",
                arn,
            ])),
            "list-tags",
        ))
    };
    let t = tags(&arns["webhooks/eu-west-1"]);
    assert_eq!(t["byok:ceremony"], "2026-11-batch", "{t}");
    assert_eq!(t["byok:target"], "webhooks/eu-west-1", "{t}");
    assert_eq!(t["team"], "payments", "{t}");
    assert_eq!(tags(&arns["orders/eu-west-1"]), serde_json::json!({}));
    // The completed file records every key, Region and fingerprint; it is not overwritten.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hsm.path("ceremony.json")).unwrap()).unwrap();
    let wh = &file["keys"][1]["targets"][0];
    assert_eq!(wh["wrapping_key_spec"], "RSA_3072");
    assert_eq!(wh["kms_key"], arns["webhooks/us-east-1"].as_str());
    assert_eq!(wh["wrapping_key_sha256"].as_str().unwrap().len(), 64);
    let o = prepare("draft.json", "ceremony.json", &["--create-missing"]);
    assert!(
        !o.status.success() && stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );

    let run_ceremony = |file: &str, out: &Path| {
        ok(
            run(hsm.airgap().args([
                "ceremony",
                "run",
                hsm.path(file).to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--pin-env",
                "BYOK_TEST_PIN",
                "--non-interactive",
                "--expect-parameters-digest",
                &params_digest(&hsm.path(file)),
            ])),
            "ceremony run",
        );
        sign(&alice_t, "alice", out);
    };
    let out = hsm.path("out");
    run_ceremony("ceremony.json", &out);
    let params_dir = hsm.path("params");
    let import = |dir: &Path, pdir: &Path, extra: &[&str]| {
        let mut a = vec![
            "import".to_string(),
            dir.to_str().unwrap().into(),
            "--policy".into(),
            policy.to_str().unwrap().into(),
            "--params-dir".into(),
            pdir.to_str().unwrap().into(),
            "--jobs".into(),
            "3".into(),
            "--json".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        run(ls.bastion().args(a))
    };

    // One bundle's parameters missing from the bastion: the whole batch is refused, nothing sent.
    let partial = hsm.path("partial-params");
    std::fs::create_dir(&partial).unwrap();
    for f in ["orders-us-east-1", "orders-eu-west-1", "webhooks-us-east-1"] {
        std::fs::copy(
            params_dir.join(format!("{f}.json")),
            partial.join(format!("{f}.json")),
        )
        .unwrap();
    }
    let o = import(&out, &partial, &["--no-expiry"]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("1 of 4 bundles cannot be imported, so none is")
            && stderr(&o).contains("webhooks/eu-west-1: no parameters file")
            && !stderr(&o).contains("KMS endpoint"),
        "{}",
        stderr(&o)
    );

    // One bundle imported on its own first (an interrupted earlier run).
    ok(
        run(ls.bastion().args([
            "import",
            out.to_str().unwrap(),
            "--target",
            "webhooks/eu-west-1",
            "--policy",
            policy.to_str().unwrap(),
            "--params",
            params_dir.join("webhooks-eu-west-1.json").to_str().unwrap(),
            "--no-expiry",
        ])),
        "single import",
    );
    let o = ok(import(&out, &params_dir, &["--no-expiry"]), "batch import");
    let r = json(&o);
    assert_eq!(r["summary"]["counts"]["imported"], 3, "{r}");
    assert_eq!(r["summary"]["counts"]["already_imported"], 1, "{r}");
    for b in r["bundles"].as_array().unwrap() {
        assert_eq!(
            b["key_arn"],
            arns[b["target"].as_str().unwrap()].as_str(),
            "{b}"
        );
    }
    assert!(stderr(&o).contains("[4/4] "), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("import: 1 already imported, 3 imported, 0 failed (of 4 bundles)"),
        "{}",
        stderr(&o)
    );
    // Re-running sends nothing and needs no connection.
    let o = ok(import(&out, &params_dir, &["--no-expiry"]), "re-run");
    assert_eq!(json(&o)["summary"]["counts"]["already_imported"], 4);
    assert!(!stderr(&o).contains("KMS endpoint"), "{}", stderr(&o));

    // One command proves every key in both Regions.
    let o = ok(
        run(ls.bastion().args([
            "verify",
            out.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--json",
        ])),
        "batch verify",
    );
    let v = json(&o);
    assert_eq!(v["summary"]["counts"]["proven"], 4, "{v}");
    let methods: Vec<&str> = v["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods
            .iter()
            .filter(|m| m.starts_with("GenerateMac(HMAC_SHA_256) equals"))
            .count(),
        2,
        "{methods:?}"
    );

    // Status across both Regions: the four keys (and the first material is current).
    let o = ok(
        run(ls
            .bastion()
            .args(["status", "--regions", "us-east-1,eu-west-1", "--json"])),
        "status",
    );
    let st = json(&o);
    for arn in arns.values() {
        let k = st
            .as_array()
            .unwrap()
            .iter()
            .find(|k| &k["key_arn"] == arn)
            .unwrap_or_else(|| panic!("{arn} missing from {st}"));
        assert_eq!(k["verdict"], "OK", "{k}");
        assert_eq!(k["region"], arn.split(':').nth(3).unwrap(), "{k}");
    }

    // Rotation: a second ceremony brings new material for the symmetric key in both Regions.
    std::fs::write(
        hsm.path("draft-rotation.json"),
        draft(
            "2026-11-orders-rotation",
            serde_json::json!([
                {"label": "orders-v2", "key_spec": "SYMMETRIC_DEFAULT", "source": "generate", "targets": [
                    target("us-east-1", "params/rot-us-east-1.json", serde_json::json!({"kms_key": arns["orders/us-east-1"]})),
                    target("eu-west-1", "params/rot-eu-west-1.json", serde_json::json!({"kms_key": arns["orders/eu-west-1"]}))]}
            ]),
        ),
    )
    .unwrap();
    ok(
        prepare("draft-rotation.json", "rotation.json", &[]),
        "prepare rotation",
    );
    let out2 = hsm.path("out-rotation");
    run_ceremony("rotation.json", &out2);
    let o = ok(
        import(&out2, &params_dir, &["--no-expiry", "--new-key-material"]),
        "import new material",
    );
    assert_eq!(json(&o)["summary"]["counts"]["imported"], 2);
    let o = ok(
        run(ls
            .bastion()
            .args(["rotate", out2.to_str().unwrap(), "--json", "--policy"])
            .arg(&policy)),
        "batch rotate",
    );
    let rot = json(&o);
    assert_eq!(rot["summary"]["counts"]["rotated"], 2, "{rot}");
    let o = ok(
        run(ls.bastion().args([
            "verify",
            out2.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--json",
        ])),
        "verify rotated",
    );
    assert_eq!(json(&o)["summary"]["counts"]["proven"], 2);
    // The first ceremony's import receipts still name the material they imported.
    let first = json(&ok(
        run(ls.bastion().args([
            "import",
            out.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--params-dir",
            params_dir.to_str().unwrap(),
            "--no-expiry",
            "--json",
        ])),
        "receipts",
    ));
    assert_eq!(first["summary"]["counts"]["already_imported"], 4);
    // Receipts live in the bastion's state directory, not next to the bundles.
    assert!(
        !std::fs::read_dir(hsm.dir.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("receipt")),
        "a receipt was written next to the bundles"
    );

    // Without a ceremony file: a key created with an alias and tags, then prepared from a list.
    let o = ok(
        run(ls.bastion().args([
            "prepare",
            "--create",
            "HMAC_384",
            "--alias",
            "alias/reports",
            "--tag",
            "team=reports",
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
            "--out-dir",
            hsm.path("created").to_str().unwrap(),
            "--json",
        ])),
        "prepare --create --alias",
    );
    let reports = json(&o)[0]["key_arn"].as_str().unwrap().to_string();
    assert_eq!(tags(&reports)["team"], "reports");
    std::fs::write(
        hsm.path("keys.txt"),
        format!(
            "# keys due this quarter\nalias/reports\n\n{}  # orders, eu\n",
            arns["orders/eu-west-1"]
        ),
    )
    .unwrap();
    let o = ok(
        run(ls.bastion().args([
            "prepare",
            "--key-list",
            hsm.path("keys.txt").to_str().unwrap(),
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
            "--out-dir",
            hsm.path("listed").to_str().unwrap(),
            "--json",
        ])),
        "prepare --key-list",
    );
    let listed = json(&o);
    assert_eq!(listed[0]["key_arn"], reports.as_str(), "{listed}");
    assert_eq!(
        listed[1]["key_arn"],
        arns["orders/eu-west-1"].as_str(),
        "{listed}"
    );
    // Two KMS endpoints announced: the listed keys' Regions.
    assert_eq!(
        stderr(&o).matches("KMS endpoint: ").count(),
        2,
        "{}",
        stderr(&o)
    );
    let o = run(ls.bastion().args([
        "prepare",
        "--create",
        "HMAC_256",
        "--create",
        "HMAC_256",
        "--alias",
        "alias/two",
        "--wrapping-algorithm",
        "RSAES_OAEP_SHA_1",
        "--out-dir",
        hsm.path("two").to_str().unwrap(),
    ]));
    assert!(
        !o.status.success() && stderr(&o).contains("exactly one --create"),
        "{}",
        stderr(&o)
    );
}
