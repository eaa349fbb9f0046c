//! SoftHSM 2.7.0 (built from source by `scripts/softhsm27.sh`, chosen by
//! path through `BYOK_TEST_SOFTHSM27_MODULE`): the only token the tests can
//! run whose `CKM_RSA_AES_KEY_WRAP` is native. Every RSA and EC key spec is
//! wrapped with it and unwrapped in software as KMS does; its SHA-256 defect
//! (it accepts SHA-256 OAEP parameters and wraps with SHA-1) is refused by the
//! self-test; its `CKM_AES_KEY_WRAP_PAD` no longer zero-pads.

mod common;

use common::*;

const NATIVE_SHA1: &str = "CKM_RSA_AES_KEY_WRAP (AES-256, OAEP SHA-1, MGF1-SHA-1, empty label)";
const RSA_AND_EC: [&str; 7] = [
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
];

/// Every RSA and EC key spec through the native mechanism under a
/// `bits`-bit wrapping key, unwrapped in software (OAEP-SHA-1, RFC 5649,
/// PKCS#8, public key equal to the HSM's: `check_output`).
fn native_sha1_under(bits: usize) {
    let t = SoftHsm::v27(&format!("native-{bits}"));
    let kms = FakeKms::new(bits);
    for spec in RSA_AND_EC {
        let m = wrap_ok(
            &t,
            &kms,
            spec,
            "RSA_AES_KEY_WRAP_SHA_1",
            &format!("native-{bits}-{}", spec.to_lowercase()),
        );
        assert_eq!(m["wrap_method"], NATIVE_SHA1, "{spec}: {m}");
        assert_eq!(m["hsm_key"]["generated"], true);
        let self_test = m["self_test"].to_string();
        if spec.starts_with("RSA_") {
            // RSA PKCS#8 lengths vary: the exact-length check must have run.
            assert!(
                self_test.contains("61-byte secret unwraps to exactly 61 bytes"),
                "{self_test}"
            );
        }
        // The blob is OAEP(k bytes) || RFC 5649 of the PKCS#8 key, nothing more.
        let out = t.path(&format!("native-{bits}-{}.out", spec.to_lowercase()));
        let blob = std::fs::read(out.join("EncryptedKeyMaterial.bin")).unwrap();
        let plain = kms.unwrap("RSA_AES_KEY_WRAP_SHA_1", &blob);
        assert_eq!(blob.len(), bits / 8 + plain.len().div_ceil(8) * 8 + 8);
    }
}

#[test]
fn native_rsa_aes_key_wrap_sha1_every_rsa_and_ec_spec_under_rsa_2048() {
    native_sha1_under(2048);
}

#[test]
fn native_rsa_aes_key_wrap_sha1_every_rsa_and_ec_spec_under_rsa_3072() {
    native_sha1_under(3072);
}

#[test]
fn native_rsa_aes_key_wrap_sha1_every_rsa_and_ec_spec_under_rsa_4096() {
    native_sha1_under(4096);
}

/// The keys on the token (labels), to prove a refusal generated nothing.
fn key_labels(t: &SoftHsm) -> Vec<String> {
    let mut a = vec!["keys".to_string()];
    a.extend(t.hsm_args());
    a.push("--json".into());
    let o = run(t.airgap().args(a));
    assert!(o.status.success(), "{}", stderr(&o));
    let keys: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    keys.as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sha256_is_refused_because_the_token_wraps_with_sha1() {
    let t = SoftHsm::v27("sha256-defect");
    let kms = FakeKms::new(2048);
    for spec in ["RSA_2048", "ECC_NIST_P256"] {
        let params = t.path("p.json");
        kms.write_params(&params, 600);
        let out = t.path("out");
        let before = entries(t.dir.path());
        let o = run(t.airgap().args(wrap_args(
            &t,
            &params,
            spec,
            "RSA_AES_KEY_WRAP_SHA_256",
            "sha256",
            &kms.fingerprint(),
            &out,
        )));
        assert!(!o.status.success(), "{spec}");
        let err = stderr(&o);
        // The native candidate: the precise diagnosis.
        assert!(
            err.contains("CKM_RSA_AES_KEY_WRAP (AES-256, OAEP SHA-256, MGF1-SHA-256, empty label): the token wrapped the AES key with RSA-OAEP SHA-1 despite being asked for SHA-256"),
            "{spec}: {err}"
        );
        // The composite candidate: SoftHSM's RSA-OAEP is SHA-1 only.
        assert!(
            err.contains("CKM_AES_KEY_WRAP_PAD + CKM_RSA_PKCS_OAEP (SHA-256")
                && err.contains("does not do RSA-OAEP with SHA-256"),
            "{spec}: {err}"
        );
        assert!(
            err.contains("Request import parameters for the SHA-1 variant of RSA_AES_KEY_WRAP"),
            "{spec}: {err}"
        );
        assert_eq!(entries(t.dir.path()), before, "{spec}: nothing written");
        assert!(!out.exists());
    }
    assert_eq!(key_labels(&t), Vec::<String>::new(), "no key generated");
}

fn row<'a>(r: &'a serde_json::Value, spec: &str, alg: &str) -> &'a serde_json::Value {
    r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["key_spec"] == spec && x["wrapping_algorithm"] == alg)
        .unwrap_or_else(|| panic!("no row {spec} {alg} in {r}"))
}

#[test]
fn mechanisms_shows_native_for_sha1_and_the_refusal_for_sha256() {
    let t = SoftHsm::v27("mechanisms");
    let mut args = vec!["mechanisms".to_string()];
    args.extend(t.hsm_args());
    args.extend(
        [
            "--key-spec",
            "SYMMETRIC_DEFAULT",
            "--key-spec",
            "RSA_2048",
            "--key-spec",
            "ECC_NIST_P521",
            "--json",
        ]
        .map(String::from),
    );
    let o = run(t.airgap().args(&args));
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["format"], "byok-ceremony/mechanisms/v1");
    assert!(
        r["token"]["library"].as_str().unwrap().contains("2.7"),
        "{}",
        r["token"]
    );
    assert_eq!(
        r["mechanisms"],
        serde_json::json!([
            ["CKM_RSA_PKCS_OAEP (0x9)", true],
            ["CKM_RSA_AES_KEY_WRAP (0x1054)", true],
            ["CKM_AES_KEY_WRAP_KWP (0x210b)", false],
            ["CKM_AES_KEY_WRAP_PAD (0x210a)", true]
        ])
    );
    for spec in ["RSA_2048", "ECC_NIST_P521"] {
        let ok = row(&r, spec, "RSA_AES_KEY_WRAP_SHA_1");
        assert_eq!(ok["result"], "pass", "{ok}");
        assert_eq!(
            ok["method"],
            serde_json::json!({"method": "native_rsa_aes", "hash": "SHA_1"})
        );
        assert_eq!(ok["detail"], NATIVE_SHA1);
        assert_eq!(ok["wrapping_key_bits"], 2048);
        let refused = row(&r, spec, "RSA_AES_KEY_WRAP_SHA_256");
        assert_eq!(refused["result"], "unsupported", "{refused}");
        assert!(refused["method"].is_null());
        assert!(
            refused["detail"].as_str().unwrap().contains(
                "the token wrapped the AES key with RSA-OAEP SHA-1 despite being asked for SHA-256"
            ),
            "{refused}"
        );
    }
    // OAEP for secrets: SHA-1 only, as on 2.6.1.
    assert_eq!(
        row(&r, "SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1")["result"],
        "pass"
    );
    let oaep256 = row(&r, "SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_256");
    assert_eq!(oaep256["result"], "unsupported", "{oaep256}");
    assert_eq!(
        row(&r, "RSA_2048", "RSAES_OAEP_SHA_1")["result"],
        "kms-forbids"
    );
}

/// `--aes-key-wrap pad` (ephemeral AES key + CKM_AES_KEY_WRAP_PAD + OAEP):
/// 2.6.1's `_PAD` zero-pads to a multiple of 8 bytes, 2.7.0's does not
/// (its `C_WrapKey` only pads for `CKM_AES_KEY_WRAP`), so the composite
/// method passes the self-test for the key specs 2.6.1 cannot export.
#[test]
fn composite_aes_key_wrap_pad_no_longer_zero_pads() {
    let t = SoftHsm::v27("pad");
    let kms = FakeKms::new(2048);
    for spec in ["ECC_NIST_P256", "ECC_NIST_P521", "RSA_2048", "RSA_3072"] {
        let label = format!("pad-{}", spec.to_lowercase());
        let params = t.path(&format!("{label}.params.json"));
        let token = kms.write_params(&params, 600);
        let out = t.path(&format!("{label}.out"));
        let mut args = wrap_args(
            &t,
            &params,
            spec,
            "RSA_AES_KEY_WRAP_SHA_1",
            &label,
            &kms.fingerprint(),
            &out,
        );
        args.extend(["--aes-key-wrap".into(), "pad".into()]);
        let o = run(t.airgap().args(&args));
        assert!(o.status.success(), "{spec}: {}", stderr(&o));
        let m = check_output(&kms, &out, spec, "RSA_AES_KEY_WRAP_SHA_1", &token);
        assert_eq!(
            m["wrap_method"],
            "ephemeral AES-256 (CKM_AES_KEY_GEN) + CKM_AES_KEY_WRAP_PAD + CKM_RSA_PKCS_OAEP (SHA-1, MGF1-SHA-1, empty label)"
        );
        let self_test = m["self_test"].to_string();
        if spec.starts_with("RSA_") {
            assert!(
                self_test.contains("61-byte secret unwraps to exactly 61 bytes (no padding added)"),
                "{self_test}"
            );
        }
    }
}

#[test]
fn wrap_with_trusted_through_the_native_mechanism() {
    let t = SoftHsm::v27("trusted27");
    let kms = FakeKms::new(3072);
    for spec in ["ECC_NIST_P256", "RSA_2048"] {
        let label = format!("trusted-{}", spec.to_lowercase());
        let params = t.path(&format!("{label}.params.json"));
        let token = kms.write_params(&params, 600);
        let out = t.path(&format!("{label}.out"));
        let mut args = wrap_args(
            &t,
            &params,
            spec,
            "RSA_AES_KEY_WRAP_SHA_1",
            &label,
            &kms.fingerprint(),
            &out,
        );
        args.extend(["--wrap-with-trusted", "--so-pin-env", "BYOK_TEST_SO_PIN"].map(String::from));
        let o = run(t.airgap().env("BYOK_TEST_SO_PIN", SO_PIN).args(&args));
        assert!(o.status.success(), "{spec}: {}", stderr(&o));
        let m = check_output(&kms, &out, spec, "RSA_AES_KEY_WRAP_SHA_1", &token);
        assert_eq!(m["wrap_method"], NATIVE_SHA1);
        assert_eq!(m["hsm_key"]["wrap_with_trusted"], true);
        assert!(
            m["self_test"]
                .to_string()
                .contains("refused to an untrusted wrapping key"),
            "{}",
            m["self_test"]
        );
    }
    // The key cannot be wrapped again without the security officer.
    let params = t.path("again.params.json");
    kms.write_params(&params, 600);
    let before = entries(t.dir.path());
    let mut args = wrap_args(
        &t,
        &params,
        "ECC_NIST_P256",
        "RSA_AES_KEY_WRAP_SHA_1",
        "trusted-ecc_nist_p256",
        &kms.fingerprint(),
        &t.path("again.out"),
    );
    args.push("--existing".into());
    let o = run(t.airgap().args(&args));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("CKA_WRAP_WITH_TRUSTED") && stderr(&o).contains("--wrap-with-trusted"),
        "{}",
        stderr(&o)
    );
    assert_eq!(entries(t.dir.path()), before);
}
