//! The SHA-256 wrapping paths and CKM_AES_KEY_WRAP_KWP, proven on a second,
//! independent PKCS#11 implementation: NSS's softoken, loaded directly with its
//! configuration passed through `--module-init-string`.

mod common;

use common::*;

#[test]
fn sha256_oaep_for_secret_and_ec_keys() {
    let t = NssDb::new();
    let kms = FakeKms::new(2048);
    for spec in [
        "SYMMETRIC_DEFAULT",
        "HMAC_224",
        "HMAC_256",
        "HMAC_384",
        "HMAC_512",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
    ] {
        let m = wrap_ok(
            &t,
            &kms,
            spec,
            "RSAES_OAEP_SHA_256",
            &format!("oaep256-{}", spec.to_lowercase()),
        );
        assert!(
            m["wrap_method"]
                .as_str()
                .unwrap()
                .starts_with("CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256"),
            "{m}"
        );
        assert_eq!(m["token"]["label"], NSS_TOKEN);
    }
    // P-521's PKCS#8 does not fit OAEP under RSA_2048, but does under RSA_3072.
    let big = FakeKms::new(3072);
    wrap_ok(
        &t,
        &big,
        "ECC_NIST_P521",
        "RSAES_OAEP_SHA_256",
        "oaep256-p521",
    );
}

#[test]
fn rsa_aes_key_wrap_through_kwp() {
    let t = NssDb::new();
    let kms = FakeKms::new(2048);
    for (spec, alg) in [
        ("RSA_2048", "RSA_AES_KEY_WRAP_SHA_256"),
        ("RSA_3072", "RSA_AES_KEY_WRAP_SHA_256"),
        ("RSA_4096", "RSA_AES_KEY_WRAP_SHA_256"),
        ("RSA_2048", "RSA_AES_KEY_WRAP_SHA_1"),
        ("ECC_NIST_P256", "RSA_AES_KEY_WRAP_SHA_256"),
        ("ECC_NIST_P521", "RSA_AES_KEY_WRAP_SHA_256"),
    ] {
        let m = wrap_ok(
            &t,
            &kms,
            spec,
            alg,
            &format!("kwp-{}-{}", spec.to_lowercase(), alg.to_lowercase()),
        );
        let method = m["wrap_method"].as_str().unwrap();
        assert!(method.contains("CKM_AES_KEY_WRAP_KWP"), "{method}");
        let self_test = m["self_test"].to_string();
        if spec.starts_with("RSA_") {
            assert!(
                self_test.contains("61-byte secret unwraps to exactly 61 bytes"),
                "{self_test}"
            );
        }
    }
}

#[test]
fn self_test_refuses_nss_aes_key_wrap_pad_which_is_not_rfc5649() {
    let t = NssDb::new();
    let kms = FakeKms::new(2048);
    let params = t.path("p.json");
    kms.write_params(&params, 600);
    let out = t.path("out");
    let mut args = wrap_args(
        &t,
        &params,
        "ECC_NIST_P256",
        "RSA_AES_KEY_WRAP_SHA_256",
        "pad-refused",
        &kms.fingerprint(),
        &out,
    );
    args.extend(["--aes-key-wrap".into(), "pad".into()]);
    let before = entries(t.dir.path());
    let o = run(t.airgap().args(&args));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("CKM_AES_KEY_WRAP_PAD") && err.contains("does not unwrap as RFC 5649"),
        "{err}"
    );
    assert_eq!(entries(t.dir.path()), before, "nothing written");

    // The self-test ran before key generation: the label is still free, and
    // the default (KWP first) succeeds with it.
    let m = wrap_ok(
        &t,
        &kms,
        "ECC_NIST_P256",
        "RSA_AES_KEY_WRAP_SHA_256",
        "pad-refused",
    );
    assert_eq!(m["hsm_key"]["generated"], true);

    // The probe reports the same, row by row.
    let mut probe = vec!["selftest".to_string()];
    probe.extend(t.hsm_args());
    probe.extend(
        [
            "--key-spec",
            "RSA_2048",
            "--wrapping-algorithm",
            "RSA_AES_KEY_WRAP_SHA_256",
            "--aes-key-wrap",
            "pad",
            "--json",
        ]
        .map(String::from),
    );
    let o = run(t.airgap().args(&probe));
    assert!(
        !o.status.success(),
        "an explicitly requested combination that fails exits non-zero"
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["rows"][0]["result"], "unsupported");
}

#[test]
fn nss_mechanism_report_lists_kwp_and_sha256() {
    let t = NssDb::new();
    let mut args = vec!["mechanisms".to_string()];
    args.extend(t.hsm_args());
    args.extend(
        [
            "--key-spec",
            "SYMMETRIC_DEFAULT",
            "--key-spec",
            "ECC_SECG_P256K1",
            "--json",
        ]
        .map(String::from),
    );
    let o = run(t.airgap().args(&args));
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mechs = r["mechanisms"].to_string();
    assert!(
        mechs.contains("[\"CKM_AES_KEY_WRAP_KWP (0x210b)\",true]"),
        "{mechs}"
    );
    let row = |spec: &str, alg: &str| {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["key_spec"] == spec && x["wrapping_algorithm"] == alg)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row("SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_256")["result"],
        "pass"
    );
    assert_eq!(
        row("SYMMETRIC_DEFAULT", "RSA_AES_KEY_WRAP_SHA_256")["result"],
        "kms-forbids"
    );
    // NSS has no secp256k1: reported, not fatal.
    let k1 = row("ECC_SECG_P256K1", "RSA_AES_KEY_WRAP_SHA_256");
    assert_eq!(k1["result"], "unsupported");
    assert!(
        k1["detail"].as_str().unwrap().contains("cannot hold"),
        "{k1}"
    );
}
