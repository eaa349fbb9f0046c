//! Token selection, PIN sources and `inspect`.

mod common;

use common::*;

fn probe_args(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "mechanisms",
        "--module",
        SOFTHSM_MODULE,
        "--key-spec",
        "SYMMETRIC_DEFAULT",
        "--wrapping-algorithm",
        "RSAES_OAEP_SHA_1",
        "--json",
    ]
    .map(String::from)
    .to_vec();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn token_label(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["rows"][0]["result"], "pass");
    r["token"]["label"].as_str().unwrap().to_string()
}

#[test]
fn token_selection_by_label_slot_or_only_one() {
    let t = SoftHsm::new("first");
    // The only token is used when none is named.
    let o = run(t.airgap().args(probe_args(&["--pin-env", "BYOK_TEST_PIN"])));
    assert_eq!(token_label(&o), "first");

    let out = std::process::Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &t.conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "second",
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    let slot: u64 = said
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .expect("softhsm2-util prints the slot");

    // Two tokens and no choice: refused, naming both.
    let o = run(t.airgap().args(probe_args(&["--pin-env", "BYOK_TEST_PIN"])));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("2 tokens")
            && err.contains("\"first\"")
            && err.contains("\"second\"")
            && err.contains("--slot"),
        "{err}"
    );

    let o = run(t.airgap().args(probe_args(&[
        "--pin-env",
        "BYOK_TEST_PIN",
        "--token-label",
        "second",
    ])));
    assert_eq!(token_label(&o), "second");
    let o = run(t.airgap().args(probe_args(&[
        "--pin-env",
        "BYOK_TEST_PIN",
        "--slot",
        &slot.to_string(),
    ])));
    assert_eq!(token_label(&o), "second");
    let o = run(t.airgap().args(probe_args(&[
        "--pin-env",
        "BYOK_TEST_PIN",
        "--slot",
        "4242",
    ])));
    assert!(
        stderr(&o).contains("no token in slot 4242"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn pin_file_and_missing_terminal() {
    let t = SoftHsm::new("pins");
    let pin_file = t.path("pin");
    std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
    // Owner-only, as PIN files must be (tests/hostile_token.rs has the refusals).
    std::fs::set_permissions(
        &pin_file,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let o = run(t
        .airgap()
        .args(probe_args(&["--pin-file", pin_file.to_str().unwrap()])));
    assert_eq!(token_label(&o), "pins");

    std::fs::write(&pin_file, "\n").unwrap();
    let o = run(t
        .airgap()
        .args(probe_args(&["--pin-file", pin_file.to_str().unwrap()])));
    assert!(stderr(&o).contains("is empty"), "{}", stderr(&o));

    // No PIN option and no terminal: a clear error, not a hang. `setsid` takes
    // away the controlling terminal even when the tests run in one.
    let o = run(std::process::Command::new("setsid")
        .arg("-w")
        .arg(env!("CARGO_BIN_EXE_byok-airgap"))
        .env("SOFTHSM2_CONF", &t.conf)
        .stdin(std::process::Stdio::null())
        .args(probe_args(&[])));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--pin-env VAR or --pin-file PATH"),
        "{}",
        stderr(&o)
    );

    // PINs are never accepted as arguments.
    let o = run(t.airgap().args(probe_args(&["--pin", USER_PIN])));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn inspect_shows_fingerprint_and_expiry() {
    let t = SoftHsm::new("inspect");
    let kms = FakeKms::new(3072);
    let params = t.path("p.json");
    let token = kms.write_params(&params, 90);
    let o = run(t
        .airgap()
        .args(["inspect", "--json", "--params", params.to_str().unwrap()]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["wrapping_key_sha256"], kms.fingerprint());
    assert_eq!(s["wrapping_key_spec"], "RSA_3072");
    assert_eq!(s["import_token_len"], token.len());
    let left = s["minutes_left"].as_i64().unwrap();
    assert!((88..=90).contains(&left), "{left}");
    let grouped = s["wrapping_key_sha256_grouped"].as_str().unwrap();
    assert_eq!(grouped.replace([' ', '\n'], ""), kms.fingerprint());

    let o = run(t
        .airgap()
        .args(["inspect", "--params", params.to_str().unwrap()]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&kms.fingerprint()[..4]) && text.contains("RSA_3072"),
        "{text}"
    );
}
