//! Declarative ceremonies: a 2-of-3 rotation of 6 keys (3 services × 2
//! environments, one key wrapped for two Regions) planned, run with an injected
//! crash, resumed, signed and verified; and strict refusal of bad files before
//! any HSM session.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

struct Fixture {
    hsm: SoftHsm,
    file: PathBuf,
    kms: Vec<(String, String, FakeKms)>, // (label, target, kms)
    cards: Vec<(&'static str, SoftHsm)>,
}

const KEYS: [(&str, &str, &str); 6] = [
    ("prod-s3", "SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1"),
    ("dev-s3", "SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1"),
    ("prod-rds", "HMAC_256", "RSAES_OAEP_SHA_1"),
    ("dev-rds", "HMAC_512", "RSAES_OAEP_SHA_1"),
    ("prod-dynamo", "ECC_NIST_P384", "RSA_AES_KEY_WRAP_SHA_1"),
    ("dev-dynamo", "ECC_SECG_P256K1", "RSA_AES_KEY_WRAP_SHA_1"),
];

fn fixture() -> Fixture {
    let hsm = SoftHsm::new("ceremony-hsm");
    let dir = hsm.dir.path();
    std::fs::create_dir(dir.join("params")).unwrap();
    let mut policy = Vec::new();
    let mut cards = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let (card, entry) = custodian_card(name);
        policy.push(entry);
        cards.push((name, card));
    }
    write_policy(&dir.join("policy.json"), 2, &policy);
    let mut kms = Vec::new();
    let mut keys = Vec::new();
    for (label, spec, alg) in KEYS {
        let regions: &[&str] = if label == "prod-s3" {
            &["eu-west-1", "us-east-1"]
        } else {
            &["eu-west-1"]
        };
        let mut targets = Vec::new();
        for region in regions {
            let k = FakeKms::new(2048);
            let rel = format!("params/{label}-{region}.json");
            k.write_params(&dir.join(&rel), 600);
            targets.push(serde_json::json!({"name": region, "params": rel, "wrapping_algorithm": alg, "wrapping_key_sha256": k.fingerprint()}));
            kms.push((label.to_string(), region.to_string(), k));
        }
        keys.push(serde_json::json!({"label": label, "key_spec": spec, "source": "generate", "targets": targets}));
    }
    let file = dir.join("ceremony.json");
    std::fs::write(
        &file,
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "byok-ceremony/ceremony/v1",
            "ceremony_id": "2026-11-rotation",
            "purpose": "Rotate prod and dev data keys",
            "hsm": {"module": SOFTHSM_MODULE, "token_label": "ceremony-hsm"},
            "policy": "policy.json",
            "keys": keys,
        }))
        .unwrap(),
    )
    .unwrap();
    Fixture {
        hsm,
        file,
        kms,
        cards,
    }
}

fn airgap(f: &Fixture) -> Command {
    f.hsm.airgap()
}

fn run_args(f: &Fixture, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "ceremony",
        "run",
        f.file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--pin-env",
        "BYOK_TEST_PIN",
        "--non-interactive",
        "--expect-parameters-digest",
        &params_digest(&f.file),
    ]
    .map(String::from)
    .to_vec();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn plan_run_crash_resume_sign_verify() {
    let f = fixture();
    // Plan: no HSM, a runbook with fingerprints to read aloud and sign-off lines.
    let o = run(airgap(&f).args(["ceremony", "plan", f.file.to_str().unwrap()]));
    assert!(o.status.success(), "{}", stderr(&o));
    let book = String::from_utf8_lossy(&o.stdout);
    let (_, _, first) = &f.kms[0];
    let fp = first.fingerprint();
    assert!(
        book.contains(&format!("{} {}", &fp[..4], &fp[4..8])),
        "grouped fingerprint in the runbook"
    );
    assert!(
        book.contains("| alice | | |") && book.contains("2 of 3"),
        "{book}"
    );

    // Run, killed (SIGKILL) while writing the fourth `wrapped` entry (torn
    // in half), so three wraps are recorded.
    let out = f.hsm.path("out");
    let o = run(airgap(&f)
        .args(run_args(&f, &out, &[]))
        .env("LD_PRELOAD", shared_object("kill_at"))
        .env("BYOK_KILL_UNDER", &out)
        .env("BYOK_KILL_WRITE_CONTAINING", "\"step\":\"wrapped\"")
        .env("BYOK_KILL_AT", "4"));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&o.status),
        Some(9),
        "{}",
        stderr(&o)
    );
    let o = run(Command::new(env!("CARGO_BIN_EXE_byok-airgap")).args([
        "ceremony",
        "verify",
        out.to_str().unwrap(),
        "--policy",
        f.hsm.path("policy.json").to_str().unwrap(),
    ]));
    // Killed between entries, the prefix verifies as a chain (only the
    // signatures are missing); killed in the middle of a line, the verifier
    // names the torn entry.
    let torn = !std::fs::read(out.join("transcript.jsonl"))
        .unwrap()
        .ends_with(b"\n");
    let want = if torn {
        "is incomplete (no line end)"
    } else {
        "only 0 of the 2"
    };
    assert!(stderr(&o).contains(want), "{}", stderr(&o));

    // Resume: finishes, never generating a key twice.
    let o = run(airgap(&f).args(run_args(&f, &out, &[])));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let done: usize = text
        .split(" wrapped, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        text.contains(&format!(
            "resumed and finished: {} wrapped, {done} already done",
            7 - done
        )) && done == 3,
        "{text}"
    );
    let mut a = vec!["keys".to_string()];
    a.extend(f.hsm.hsm_args());
    a.push("--json".into());
    let keys: serde_json::Value = serde_json::from_slice(&run(airgap(&f).args(a)).stdout).unwrap();
    let mut labels: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap())
        .collect();
    labels.sort();
    let mut want: Vec<&str> = KEYS.iter().map(|k| k.0).collect();
    want.sort();
    assert_eq!(labels, want, "exactly one key per label");
    // Running again after completion does nothing.
    let o = run(airgap(&f).args(run_args(&f, &out, &[])));
    assert!(
        o.status.success() && stderr(&o).contains("already complete"),
        "{}",
        stderr(&o)
    );

    // Every bundle unwraps to the HSM's key; both Regions of prod-s3 carry the same key.
    let mut kcvs = Vec::new();
    for (label, region, k) in &f.kms {
        let spec = KEYS.iter().find(|x| x.0 == label).unwrap();
        let dir = out.join(label).join(region);
        let token = std::fs::read(dir.join("ImportToken.bin")).unwrap();
        let m = check_output(k, &dir, spec.1, spec.2, &token);
        if label == "prod-s3" {
            kcvs.push(m["kcv"].clone());
        }
    }
    assert_eq!(kcvs.len(), 2);
    assert_eq!(kcvs[0], kcvs[1]);

    // Two of three custodians sign; the ceremony verifies.
    for (name, card) in &f.cards[..2] {
        let mut a = vec![
            "ceremony".to_string(),
            "sign".into(),
            out.to_str().unwrap().into(),
        ];
        a.extend(card.hsm_args());
        a.extend(["--custodian", name, "--key-label", "sig", "--yes"].map(String::from));
        let o = run(card.airgap().args(a));
        assert!(o.status.success(), "{}", stderr(&o));
        // Signers see the parameters digest and every wrapping key.
        let d = params_digest(&f.file);
        let err = stderr(&o);
        assert!(
            err.contains("Parameters digest confirmed at the run")
                && err.contains(&format!("{} {}", &d[..4], &d[4..8])),
            "{err}"
        );
        for (label, region, k) in &f.kms {
            assert!(
                err.contains(&format!("{label}/{region}")) && err.contains(&k.fingerprint()),
                "{err}"
            );
        }
    }
    let o = run(Command::new(env!("CARGO_BIN_EXE_byok-airgap")).args([
        "ceremony",
        "verify",
        out.to_str().unwrap(),
        "--policy",
        f.hsm.path("policy.json").to_str().unwrap(),
        "--json",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Seven bundles of four files, and the media summary.
    assert_eq!(v["outputs"].as_array().unwrap().len(), 7 * 4 + 1);
    let summary = std::fs::read_to_string(out.join("SUMMARY.md")).unwrap();
    for o in v["outputs"].as_array().unwrap() {
        if o["path"] != "SUMMARY.md" {
            assert!(
                summary.contains(&format!("| {} |", o["path"].as_str().unwrap()))
                    && summary.contains(o["sha256"].as_str().unwrap()),
                "{summary}"
            );
        }
    }
    assert!(
        summary.contains("`prod-s3/us-east-1`: SYMMETRIC_DEFAULT") && summary.contains("KCV "),
        "{summary}"
    );
    assert_eq!(v["signers"], serde_json::json!(["alice", "bob"]));
    let t = std::fs::read_to_string(out.join("transcript.jsonl")).unwrap();
    assert_eq!(t.matches("\"step\":\"key-generated\"").count(), 6);
    assert_eq!(t.matches("\"step\":\"wrapped\"").count(), 7);
    assert!(t.contains("skipped (--non-interactive)"));
}

#[test]
fn bad_ceremony_files_are_refused_before_any_hsm_session() {
    let f = fixture();
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&f.file).unwrap()).unwrap();
    // A module that does not exist proves no HSM was opened: a check would
    // otherwise fail on the module first.
    let mut base = good.clone();
    base["hsm"]["module"] = "/nonexistent/module.so".into();
    let digest = params_digest(&f.file);
    let refused = |v: &serde_json::Value, raw: Option<String>, needle: &str| {
        let p = f.hsm.path("bad.json");
        std::fs::write(&p, raw.unwrap_or_else(|| v.to_string())).unwrap();
        let out = f.hsm.path("bad-out");
        let o = run(airgap(&f).args([
            "ceremony",
            "run",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--pin-env",
            "BYOK_TEST_PIN",
            "--non-interactive",
            "--expect-parameters-digest",
            &digest,
        ]));
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
        assert!(err.contains("no HSM session was opened"), "{err}");
        assert!(!out.exists());
    };
    let mut v = base.clone();
    v["extra"] = 1.into();
    refused(&v, None, "unknown field");
    refused(
        &base,
        Some(base.to_string().replacen('{', "{\"ceremony_id\":\"x\",", 1)),
        "duplicate field",
    );
    let mut v = base.clone();
    v["keys"][0]["targets"][0]["params"] = "params/missing.json".into();
    refused(&v, None, "missing.json");
    let mut v = base.clone();
    v["keys"][1]["label"] = "prod-s3".into();
    refused(&v, None, "used twice");
    let expired = f.hsm.path("params/expired.json");
    f.kms[0].2.write_params(&expired, -1);
    let mut v = base.clone();
    v["keys"][0]["targets"][0]["params"] = "params/expired.json".into();
    refused(&v, None, "expired");
    let soon = f.hsm.path("params/soon.json");
    f.kms[0].2.write_params(&soon, 20);
    let mut v = base.clone();
    v["keys"][0]["targets"][0]["params"] = "params/soon.json".into();
    refused(&v, None, "before the ceremony can finish");
    let mut v = base.clone();
    v["keys"][0]["targets"][0]["wrapping_key_sha256"] = f.kms[1].2.fingerprint().into();
    refused(&v, None, "fingerprint mismatch");
    let mut v = base.clone();
    v["keys"][0]["key_spec"] = "RSA_2048".into();
    refused(&v, None, "only with RSA_AES_KEY_WRAP");
    let mut v = base.clone();
    v["keys"][1]["targets"][0] = v["keys"][0]["targets"][0].clone();
    refused(&v, None, "use the same import token");

    // A label already on the token: refused after login, before any key is generated.
    let mut v = good.clone();
    v["keys"][5]["label"] = "taken".into();
    let kms = FakeKms::new(2048);
    wrap_ok(&f.hsm, &kms, "HMAC_256", "RSAES_OAEP_SHA_1", "taken");
    let p = f.hsm.path("taken.json");
    std::fs::write(&p, v.to_string()).unwrap();
    let out = f.hsm.path("taken-out");
    let o = run(airgap(&f).args([
        "ceremony",
        "run",
        p.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--pin-env",
        "BYOK_TEST_PIN",
        "--non-interactive",
        "--expect-parameters-digest",
        &params_digest(&p),
    ]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("a key labelled \"taken\" already exists"),
        "{}",
        stderr(&o)
    );
    let mut a = vec!["keys".to_string()];
    a.extend(f.hsm.hsm_args());
    a.push("--json".into());
    let keys: serde_json::Value = serde_json::from_slice(&run(airgap(&f).args(a)).stdout).unwrap();
    assert_eq!(
        keys.as_array().unwrap().len(),
        1,
        "no ceremony key was generated: {keys}"
    );
}
