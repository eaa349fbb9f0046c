//! Batches that survive interrupts, throttling, server errors and dropped
//! connections (issue 13): LocalStack behind scripts/latency-proxy.py, which
//! injects the faults and counts what reached KMS per operation.
#![cfg(feature = "bastion")]

mod common;
#[path = "common/localstack.rs"]
mod localstack;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use localstack::*;

/// A signed ceremony directory of `n` HMAC bundles (one HSM key, `n` KMS keys).
fn ceremony_of(ls: &LocalStack, hsm: &SoftHsm, n: usize) -> (PathBuf, PathBuf) {
    let (alice_t, alice) = custodian_card("alice");
    let policy = hsm.path("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [alice]}).to_string(),
    )
    .unwrap();
    let targets: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"name": format!("t{i:02}"), "params": format!("params/t{i:02}.json"), "wrapping_algorithm": "RSAES_OAEP_SHA_1"})
        })
        .collect();
    std::fs::write(
        hsm.path("draft.json"),
        serde_json::json!({
            "format": "byok-ceremony/ceremony/v1", "ceremony_id": "batch-faults", "purpose": "faults",
            "hsm": {"module": SOFTHSM_MODULE, "token_label": hsm.label}, "policy": "policy.json",
            "keys": [{"label": "hooks", "key_spec": "HMAC_256", "source": "generate", "targets": targets}]
        })
        .to_string(),
    )
    .unwrap();
    ok(
        run(ls.bastion().args([
            "prepare",
            "--ceremony",
            hsm.path("draft.json").to_str().unwrap(),
            "--out",
            hsm.path("ceremony.json").to_str().unwrap(),
            "--create-missing",
            "--params-per-second",
            "0",
        ])),
        "prepare --ceremony",
    );
    let out = hsm.path("out");
    ok(
        run(hsm.airgap().args([
            "ceremony",
            "run",
            hsm.path("ceremony.json").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--pin-env",
            "BYOK_TEST_PIN",
            "--non-interactive",
            "--expect-parameters-digest",
            &params_digest(&hsm.path("ceremony.json")),
        ])),
        "ceremony run",
    );
    sign(&alice_t, "alice", &out);
    (out, policy)
}

fn import_args(out: &Path, policy: &Path, hsm: &SoftHsm, jobs: &str) -> Vec<String> {
    [
        "import",
        out.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--params-dir",
        hsm.path("params").to_str().unwrap(),
        "--no-expiry",
        "--jobs",
        jobs,
        "--json",
    ]
    .map(String::from)
    .to_vec()
}

fn receipts(ls: &LocalStack) -> usize {
    std::fs::read_dir(ls.bastion_state.path().join("state/receipts"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.ends_with(".json") && !n.starts_with('.')
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigint_mid_batch_stops_cleanly_and_a_rerun_finishes() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("batch-sigint");
    let (out, policy) = ceremony_of(&ls, &hsm, 30);
    // 150 ms per request, two at a time: the batch takes seconds, time to interrupt it.
    let proxy = Proxy::start(&ls.endpoint(), hsm.dir.path(), &["--delay-ms", "150"]);
    let mut child = ls
        .bastion()
        .args(["--endpoint-url", &proxy.url()])
        .args(import_args(&out, &policy, &hsm, "2"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.starts_with("[3/30] ") {
            let pid = child.id().to_string();
            // The shell's kill builtin: no dependency on a kill binary.
            ok(
                run(Command::new("sh").args(["-c", &format!("kill -INT {pid}")])),
                "kill -INT",
            );
            break;
        }
        line.clear();
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    seen.push_str(&rest);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{seen}");
    assert!(
        seen.contains("interrupted: starting nothing more"),
        "{seen}"
    );
    let v = json(&o);
    let imported = v["summary"]["counts"]["imported"].as_u64().unwrap();
    let left = v["summary"]["counts"]["left"].as_u64().unwrap();
    assert!(imported >= 3 && left > 0, "{v}");
    assert_eq!(imported + left, 30, "every bundle imported or left: {v}");
    assert!(
        seen.contains(&format!(
            "interrupted: {imported} bundle(s) done, {left} left"
        )),
        "{seen}"
    );
    // Every import that KMS answered has its receipt; nothing half-recorded.
    assert_eq!(receipts(&ls), imported as usize);
    assert_eq!(
        proxy.count("forwarded", "ImportKeyMaterial"),
        imported,
        "{}",
        proxy.counts()
    );
    // The re-run finishes the rest and repeats nothing.
    let o = ok(
        run(ls
            .bastion()
            .args(["--endpoint-url", &proxy.url()])
            .args(import_args(&out, &policy, &hsm, "4"))),
        "re-run",
    );
    let v = json(&o);
    assert_eq!(v["summary"]["counts"]["imported"], left, "{v}");
    assert_eq!(v["summary"]["counts"]["already_imported"], imported, "{v}");
    assert_eq!(receipts(&ls), 30);
    assert_eq!(proxy.count("forwarded", "ImportKeyMaterial"), 30);
}

#[test]
fn throttling_server_errors_and_dropped_connections_import_each_bundle_once() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("batch-faults");
    let (out, policy) = ceremony_of(&ls, &hsm, 50);
    let proxy = Proxy::start(
        &ls.endpoint(),
        hsm.dir.path(),
        &[
            "--delay-ms",
            "0",
            "--seed",
            "13",
            "--fault",
            "ImportKeyMaterial:throttle:0.2",
            "--fault",
            "ImportKeyMaterial:http500:0.05",
            "--fault",
            "ImportKeyMaterial:http503:0.05",
            "--fault",
            "ImportKeyMaterial:reset-before:0.05",
            "--fault",
            "ImportKeyMaterial:reset-after:0.1",
            "--fault",
            "*:throttle:0.1",
            "--fault",
            "*:http503:0.05",
            "--fault",
            "*:reset-before:0.03",
            "--fault",
            "*:delay:0.02",
            "--max-faults-per-request",
            "2",
        ],
    );
    let o = ok(
        run(ls
            .bastion()
            .args(["--endpoint-url", &proxy.url()])
            .args(import_args(&out, &policy, &hsm, "8"))),
        "import through faults",
    );
    let v = json(&o);
    let counts = proxy.counts();
    let c = &v["summary"]["counts"];
    let imported = c["imported"].as_u64().unwrap_or(0);
    let reconciled = c["reconciled"].as_u64().unwrap_or(0);
    assert_eq!(imported + reconciled, 50, "{v}\n{counts}");
    // Faults were injected, and the bastion counted its retries.
    let faults = |k: &str| counts["faults"][k].as_u64().unwrap_or(0);
    assert!(faults("ImportKeyMaterial:throttle") > 0, "{counts}");
    assert!(v["summary"]["retries"].as_u64().unwrap() > 0, "{v}");
    assert!(
        stderr(&o).contains("ImportKeyMaterial retries"),
        "{}",
        stderr(&o)
    );
    // Each bundle reached KMS exactly once: a lost response was reconciled
    // (GenerateMac equals the HSM's), never sent again.
    assert_eq!(
        proxy.count("forwarded", "ImportKeyMaterial"),
        50,
        "{counts}"
    );
    assert_eq!(
        reconciled,
        faults("ImportKeyMaterial:reset-after"),
        "{v}\n{counts}"
    );
    assert_eq!(receipts(&ls), 50);
    // Every key is proven.
    let o = ok(
        run(ls.bastion().args([
            "verify",
            out.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--jobs",
            "8",
            "--json",
        ])),
        "verify",
    );
    assert_eq!(json(&o)["summary"]["counts"]["proven"], 50);

    // A crash between KMS's answer and the receipt (here: a state directory
    // without the receipts) is reconciled on the next run, without a second import.
    let state = ls.bastion_state.path().join("state");
    let after_crash = hsm.path("state-after-crash");
    std::fs::create_dir(&after_crash).unwrap();
    std::fs::set_permissions(
        &after_crash,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    copy_dir(&state.join("params"), &after_crash.join("params"));
    std::fs::set_permissions(
        after_crash.join("params"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let before = proxy.count("forwarded", "ImportKeyMaterial");
    let o = ok(
        run(ls
            .bastion()
            .env("BYOK_STATE_DIR", &after_crash)
            .args(["--endpoint-url", &proxy.url()])
            .args(import_args(&out, &policy, &hsm, "8"))),
        "re-run after a crash",
    );
    let v = json(&o);
    assert_eq!(v["summary"]["counts"]["reconciled"], 50, "{v}");
    assert_eq!(proxy.count("forwarded", "ImportKeyMaterial"), before);
}
