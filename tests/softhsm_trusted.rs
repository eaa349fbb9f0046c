//! `--wrap-with-trusted`: keys generated with CKA_WRAP_WITH_TRUSTED, wrapped
//! under a KMS key the security officer marks trusted for the session.

mod common;

use common::*;

fn args(
    t: &SoftHsm,
    kms: &FakeKms,
    params: &std::path::Path,
    label: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> Vec<String> {
    let mut a = wrap_args(
        t,
        params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        label,
        &kms.fingerprint(),
        out,
    );
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn trusted_wrap_end_to_end() {
    let t = SoftHsm::new("trusted");
    let kms = FakeKms::new(2048);
    let params = t.path("p.json");
    let token = kms.write_params(&params, 600);
    let so = ["--wrap-with-trusted", "--so-pin-env", "BYOK_TEST_SO_PIN"];

    // Wrong SO PIN: refused before any key is generated, nothing written.
    let before = entries(t.dir.path());
    let o = run(t.airgap().env("BYOK_TEST_SO_PIN", "99999999").args(args(
        &t,
        &kms,
        &params,
        "vault",
        &t.path("o1"),
        &so,
    )));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("security officer PIN"),
        "{}",
        stderr(&o)
    );
    assert_eq!(entries(t.dir.path()), before);

    // Right SO PIN: generated with CKA_WRAP_WITH_TRUSTED and wrapped under the trusted copy.
    let o = run(t.airgap().env("BYOK_TEST_SO_PIN", SO_PIN).args(args(
        &t,
        &kms,
        &params,
        "vault",
        &t.path("o1"),
        &so,
    )));
    assert!(o.status.success(), "{}", stderr(&o));
    let m = check_output(
        &kms,
        &t.path("o1"),
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        &token,
    );
    assert_eq!(m["hsm_key"]["wrap_with_trusted"], true);
    assert!(
        m["self_test"]
            .to_string()
            .contains("refused to an untrusted wrapping key"),
        "{}",
        m["self_test"]
    );

    // Without the SO the key cannot be exported again: clear refusal, nothing written.
    let before = entries(t.dir.path());
    let o = run(t.airgap().args(args(
        &t,
        &kms,
        &params,
        "vault",
        &t.path("o2"),
        &["--existing"],
    )));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("CKA_WRAP_WITH_TRUSTED") && stderr(&o).contains("--wrap-with-trusted"),
        "{}",
        stderr(&o)
    );
    assert_eq!(entries(t.dir.path()), before);

    // With the SO it can, and it is the same key (read back from the token as trusted-only).
    let mut extra = so.to_vec();
    extra.push("--existing");
    let o = run(t.airgap().env("BYOK_TEST_SO_PIN", SO_PIN).args(args(
        &t,
        &kms,
        &params,
        "vault",
        &t.path("o3"),
        &extra,
    )));
    assert!(o.status.success(), "{}", stderr(&o));
    let again = check_output(
        &kms,
        &t.path("o3"),
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        &token,
    );
    assert_eq!(again["kcv"], m["kcv"]);
    assert_eq!(again["hsm_key"]["wrap_with_trusted"], true);
    assert_eq!(again["hsm_key"]["generated"], false);
}

#[test]
fn so_pin_options_need_wrap_with_trusted() {
    let t = SoftHsm::new("trusted-args");
    let kms = FakeKms::new(2048);
    let params = t.path("p.json");
    kms.write_params(&params, 600);
    let o = run(t.airgap().args(args(
        &t,
        &kms,
        &params,
        "k",
        &t.path("o"),
        &["--so-pin-env", "X"],
    )));
    assert_eq!(o.status.code(), Some(2), "usage error: {}", stderr(&o));
    assert!(stderr(&o).contains("--wrap-with-trusted"), "{}", stderr(&o));
}

#[test]
fn trusted_ceremony_end_to_end() {
    let t = SoftHsm::new("trusted-ceremony");
    let media = t.path("media");
    std::fs::create_dir_all(media.join("params")).unwrap();
    let (_card, entry) = custodian_card("alice");
    write_policy(&media.join("policy.json"), 1, &[entry]);
    let keys = [
        ("vault-aes", "SYMMETRIC_DEFAULT"),
        ("vault-mac", "HMAC_256"),
    ];
    let mut kms = Vec::new();
    let mut plan = Vec::new();
    for (label, spec) in keys {
        let k = FakeKms::new(2048);
        let rel = format!("params/{label}.json");
        k.write_params(&media.join(&rel), 600);
        plan.push(serde_json::json!({"label": label, "key_spec": spec, "source": "generate",
            "targets": [{"name": "eu-west-1", "params": rel, "wrapping_algorithm": "RSAES_OAEP_SHA_1", "wrapping_key_sha256": k.fingerprint()}]}));
        kms.push(k);
    }
    let file = media.join("ceremony.json");
    std::fs::write(
        &file,
        serde_json::json!({"format": "byok-ceremony/ceremony/v1", "ceremony_id": "trusted", "purpose": "trusted wrapping",
            "hsm": {"token_label": "trusted-ceremony"}, "policy": "policy.json", "keys": plan}).to_string(),
    )
    .unwrap();
    let digest = params_digest(&file);
    let out = t.path("out");
    let run_with = |so_pin: &str| {
        run(t
            .airgap()
            .env("BYOK_TEST_SO_PIN", so_pin)
            .args(["ceremony", "run"])
            .arg(&file)
            .arg("--out")
            .arg(&out)
            .args([
                "--pin-env",
                "BYOK_TEST_PIN",
                "--non-interactive",
                "--expect-parameters-digest",
                &digest,
                "--wrap-with-trusted",
                "--so-pin-env",
                "BYOK_TEST_SO_PIN",
            ]))
    };
    // Wrong SO PIN: refused before any key is generated.
    let o = run_with("99999999");
    assert!(
        !o.status.success() && stderr(&o).contains("security officer PIN"),
        "{}",
        stderr(&o)
    );
    let listing = |t: &SoftHsm| {
        let mut a = vec!["keys".to_string()];
        a.extend(t.hsm_args());
        a.push("--json".into());
        serde_json::from_slice::<serde_json::Value>(&run(t.airgap().args(a)).stdout).unwrap()
    };
    assert_eq!(listing(&t).as_array().unwrap().len(), 0);
    // Right SO PIN: every key carries CKA_WRAP_WITH_TRUSTED and wraps under the trusted copies.
    let o = run_with(SO_PIN);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = listing(&t);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    for k in listed.as_array().unwrap() {
        assert_eq!(k["wrap_with_trusted"], true, "{k}");
    }
    for ((label, spec), k) in keys.iter().zip(&kms) {
        let dir = out.join(label).join("eu-west-1");
        let token = std::fs::read(dir.join("ImportToken.bin")).unwrap();
        check_output(k, &dir, spec, "RSAES_OAEP_SHA_1", &token);
    }
    let transcript = std::fs::read_to_string(out.join("transcript.jsonl")).unwrap();
    assert!(
        transcript.contains("\"wrap_with_trusted\":true"),
        "{transcript}"
    );
}
