//! `byok-airgap wrap` on SoftHSM2: every key spec and algorithm SoftHSM2 can
//! do, checked by unwrapping in software as KMS would; and every refusal.

mod common;

use common::*;

#[test]
fn every_spec_softhsm_can_do_unwraps_to_the_hsm_key() {
    let t = SoftHsm::new("wrap-matrix");
    let kms = FakeKms::new(2048);
    for spec in [
        "SYMMETRIC_DEFAULT",
        "HMAC_224",
        "HMAC_256",
        "HMAC_384",
        "HMAC_512",
    ] {
        let m = wrap_ok(
            &t,
            &kms,
            spec,
            "RSAES_OAEP_SHA_1",
            &format!("k-{}", spec.to_lowercase()),
        );
        assert!(m["wrap_method"]
            .as_str()
            .unwrap()
            .starts_with("CKM_RSA_PKCS_OAEP (SHA-1"));
        assert_eq!(m["hsm_key"]["generated"], true);
    }
    // SoftHSM2's RFC 5649 wrap is exact for these curves' PKCS#8 lengths.
    for spec in ["ECC_NIST_P384", "ECC_SECG_P256K1"] {
        let m = wrap_ok(
            &t,
            &kms,
            spec,
            "RSA_AES_KEY_WRAP_SHA_1",
            &format!("k-{}", spec.to_lowercase()),
        );
        assert!(m["wrap_method"]
            .as_str()
            .unwrap()
            .contains("CKM_AES_KEY_WRAP_PAD"));
    }
}

#[test]
fn larger_wrapping_keys_work() {
    let t = SoftHsm::new("wrap-4096");
    let kms = FakeKms::new(4096);
    wrap_ok(
        &t,
        &kms,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "aes-under-4096",
    );
    wrap_ok(
        &t,
        &kms,
        "ECC_NIST_P384",
        "RSA_AES_KEY_WRAP_SHA_1",
        "ec-under-4096",
    );
}

#[test]
fn existing_key_wraps_again_to_the_same_material() {
    let t = SoftHsm::new("rewrap");
    let kms = FakeKms::new(2048);
    let first = wrap_ok(&t, &kms, "SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "s3-prod");
    // Same label without --existing: refused, nothing written.
    let params = t.path("again.json");
    kms.write_params(&params, 600);
    let out = t.path("again.out");
    let o = run(t.airgap().args(wrap_args(
        &t,
        &params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "s3-prod",
        &kms.fingerprint(),
        &out,
    )));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already exists") && stderr(&o).contains("--existing"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // With --existing: the same key (same KCV and CKA_ID), not a new one.
    let mut args = wrap_args(
        &t,
        &params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "s3-prod",
        &kms.fingerprint(),
        &out,
    );
    args.push("--existing".into());
    let o = run(t.airgap().args(args));
    assert!(o.status.success(), "{}", stderr(&o));
    let token = std::fs::read(t.path("again.out/ImportToken.bin")).unwrap();
    let second = check_output(&kms, &out, "SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", &token);
    assert_eq!(second["kcv"], first["kcv"]);
    assert_eq!(second["hsm_key"]["id_hex"], first["hsm_key"]["id_hex"]);
    assert_eq!(second["hsm_key"]["generated"], false);
    // --existing with a spec that does not match the key: refused.
    let mut args = wrap_args(
        &t,
        &params,
        "HMAC_256",
        "RSAES_OAEP_SHA_1",
        "s3-prod",
        &kms.fingerprint(),
        &t.path("x.out"),
    );
    args.push("--existing".into());
    let o = run(t.airgap().args(args));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a HMAC_256 key"), "{}", stderr(&o));
    // --existing with a missing label.
    let mut args = wrap_args(
        &t,
        &params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "nope",
        &kms.fingerprint(),
        &t.path("y.out"),
    );
    args.push("--existing".into());
    let o = run(t.airgap().args(args));
    assert!(
        stderr(&o).contains("no key labelled \"nope\""),
        "{}",
        stderr(&o)
    );
}

/// Run a wrap expected to fail; check the message and that nothing was written.
fn refused(t: &SoftHsm, args: Vec<String>, needle: &str) {
    refused_cmd(t, t.airgap(), args, needle)
}

/// Run `cmd` with `args`, expecting a refusal that says `needle` and writes nothing.
fn refused_cmd(t: &SoftHsm, mut cmd: std::process::Command, args: Vec<String>, needle: &str) {
    let before = entries(t.dir.path());
    let o = run(cmd.args(&args));
    assert!(!o.status.success(), "expected failure for {args:?}");
    let err = stderr(&o);
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    assert!(err.lines().any(|l| l.starts_with("error: ")), "{err}");
    assert_eq!(
        entries(t.dir.path()),
        before,
        "a refused run must leave no output"
    );
}

#[test]
fn sha256_and_unprovable_combinations_are_refused_on_softhsm() {
    let t = SoftHsm::new("refusals");
    let kms = FakeKms::new(2048);
    let params = t.path("p.json");
    kms.write_params(&params, 600);
    let fp = kms.fingerprint();
    let out = t.path("out");
    refused(
        &t,
        wrap_args(
            &t,
            &params,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_256",
            "a",
            &fp,
            &out,
        ),
        "SHA-1 only",
    );
    refused(
        &t,
        wrap_args(
            &t,
            &params,
            "ECC_NIST_P384",
            "RSA_AES_KEY_WRAP_SHA_256",
            "b",
            &fp,
            &out,
        ),
        "SHA-1 only",
    );
    // SoftHSM2 will not OAEP-wrap a private key: say RSA_AES_KEY_WRAP is the way.
    refused(
        &t,
        wrap_args(
            &t,
            &params,
            "ECC_NIST_P384",
            "RSAES_OAEP_SHA_1",
            "c",
            &fp,
            &out,
        ),
        "RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256 instead",
    );
    // SoftHSM2 zero-pads before RFC 5649: KMS would get trailing bytes.
    refused(
        &t,
        wrap_args(
            &t,
            &params,
            "ECC_NIST_P256",
            "RSA_AES_KEY_WRAP_SHA_1",
            "d",
            &fp,
            &out,
        ),
        "zero bytes",
    );
    refused(
        &t,
        wrap_args(
            &t,
            &params,
            "RSA_2048",
            "RSA_AES_KEY_WRAP_SHA_1",
            "e",
            &fp,
            &out,
        ),
        "pads",
    );
    // KMS rules, before the HSM is touched.
    refused(
        &t,
        wrap_args(
            &t,
            &params,
            "HMAC_256",
            "RSA_AES_KEY_WRAP_SHA_1",
            "f",
            &fp,
            &out,
        ),
        "only with RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
    );
    refused(
        &t,
        wrap_args(&t, &params, "RSA_2048", "RSAES_OAEP_SHA_1", "g", &fp, &out),
        "only with RSA_AES_KEY_WRAP",
    );
    refused(
        &t,
        wrap_args(
            &t,
            &params,
            "ECC_NIST_P521",
            "RSAES_OAEP_SHA_1",
            "h",
            &fp,
            &out,
        ),
        "does not fit",
    );
    // No key was generated by any refused run.
    let o = run(t.airgap().args(wrap_args(
        &t,
        &params,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "a",
        &fp,
        &out,
    )));
    assert!(
        o.status.success(),
        "label 'a' must still be free: {}",
        stderr(&o)
    );
}

#[test]
fn bad_inputs_are_refused_with_nothing_written() {
    let t = SoftHsm::new("bad-inputs");
    let kms = FakeKms::new(2048);
    let fp = kms.fingerprint();
    let out = t.path("out");
    let good = t.path("good.json");
    kms.write_params(&good, 600);
    let text = std::fs::read_to_string(&good).unwrap();

    let truncated = t.path("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    refused(
        &t,
        wrap_args(
            &t,
            &truncated,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "k",
            &fp,
            &out,
        ),
        "not valid import-parameters JSON",
    );

    let not_b64 = t.path("notb64.json");
    std::fs::write(
        &not_b64,
        text.replace("\"PublicKey\": \"", "\"PublicKey\": \"%%%"),
    )
    .unwrap();
    refused(
        &t,
        wrap_args(
            &t,
            &not_b64,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "k",
            &fp,
            &out,
        ),
        "PublicKey is not valid base64",
    );

    let small = FakeKms::new(1024);
    let small_params = t.path("small.json");
    small.write_params(&small_params, 600);
    refused(
        &t,
        wrap_args(
            &t,
            &small_params,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "k",
            &small.fingerprint(),
            &out,
        ),
        "RSA-1024",
    );

    let expired = t.path("expired.json");
    kms.write_params(&expired, -5);
    refused(
        &t,
        wrap_args(
            &t,
            &expired,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "k",
            &fp,
            &out,
        ),
        "expired",
    );

    let other = FakeKms::new(2048);
    refused(
        &t,
        wrap_args(
            &t,
            &good,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "k",
            &other.fingerprint(),
            &out,
        ),
        "fingerprint mismatch",
    );
    refused(
        &t,
        wrap_args(
            &t,
            &good,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "k",
            "abcd",
            &out,
        ),
        "not a SHA-256 fingerprint",
    );

    // No confirmation at all, and no terminal: refused.
    let mut args = wrap_args(
        &t,
        &good,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "k",
        &fp,
        &out,
    );
    let i = args
        .iter()
        .position(|a| a == "--expect-wrapping-key-sha256")
        .unwrap();
    args.drain(i..i + 2);
    refused(&t, args, "must be confirmed");

    // Missing algorithm (AWS does not echo it).
    let mut args = wrap_args(
        &t,
        &good,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "k",
        &fp,
        &out,
    );
    let i = args
        .iter()
        .position(|a| a == "--wrapping-algorithm")
        .unwrap();
    args.drain(i..i + 2);
    refused(&t, args, "pass --wrapping-algorithm");

    // Output directory exists.
    std::fs::create_dir(t.path("exists")).unwrap();
    let before = entries(&t.path("exists"));
    let o = run(t.airgap().args(wrap_args(
        &t,
        &good,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "k",
        &fp,
        &t.path("exists"),
    )));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already exists; refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(entries(&t.path("exists")), before);

    // Wrong PIN.
    let mut cmd = t.airgap();
    cmd.env("BYOK_TEST_PIN", "11111111");
    refused_cmd(
        &t,
        cmd,
        wrap_args(
            &t,
            &good,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "k",
            &fp,
            &out,
        ),
        "PIN for token \"bad-inputs\" is incorrect",
    );

    // PIN variable missing.
    let mut cmd = t.airgap();
    cmd.env_remove("BYOK_TEST_PIN");
    refused_cmd(
        &t,
        cmd,
        wrap_args(
            &t,
            &good,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "k",
            &fp,
            &out,
        ),
        "BYOK_TEST_PIN is not set",
    );

    // Missing module and missing token.
    let mut args = wrap_args(
        &t,
        &good,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "k",
        &fp,
        &out,
    );
    args[2] = "/nonexistent/libpkcs11.so".into();
    refused(&t, args, "does not exist");
    let mut args = wrap_args(
        &t,
        &good,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "k",
        &fp,
        &out,
    );
    args[4] = "no-such-token".into();
    refused(&t, args, "no token labelled \"no-such-token\"");

    // Label that cannot be read aloud.
    refused(
        &t,
        wrap_args(
            &t,
            &good,
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "bad label!",
            &fp,
            &out,
        ),
        "not usable",
    );

    // After all that, the token holds no key: the good run still generates "k".
    let o = run(t.airgap().args(wrap_args(
        &t,
        &good,
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "k",
        &fp,
        &out,
    )));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn keys_lists_generated_keys_with_their_spec() {
    let t = SoftHsm::new("listing");
    let kms = FakeKms::new(2048);
    wrap_ok(&t, &kms, "HMAC_384", "RSAES_OAEP_SHA_1", "b-hmac");
    wrap_ok(
        &t,
        &kms,
        "ECC_SECG_P256K1",
        "RSA_AES_KEY_WRAP_SHA_1",
        "a-k1",
    );
    let mut args = vec!["keys".to_string()];
    args.extend(t.hsm_args());
    args.push("--json".into());
    let o = run(t.airgap().args(args));
    assert!(o.status.success(), "{}", stderr(&o));
    let keys: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0]["label"], "a-k1");
    assert_eq!(keys[0]["key_spec"], "ECC_SECG_P256K1");
    assert_eq!(keys[1]["label"], "b-hmac");
    assert_eq!(keys[1]["key_spec"], "HMAC_384");
    assert!(keys
        .iter()
        .all(|k| k["sensitive"] == true && k["extractable"] == true));
}
