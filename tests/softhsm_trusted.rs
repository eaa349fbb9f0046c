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
