//! The attacker who writes the USB stick: every file that reaches the
//! air-gapped workstation (ceremony file, import parameters, policy) is
//! hostile. Each test plays one attack against the real `byok-airgap` binary
//! and checks it fails with nothing generated, loaded or written outside
//! `--out`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// A ceremony of `keys` keys (AES and HMAC alternating), each with one target.
struct Ceremony {
    hsm: SoftHsm,
    file: PathBuf,
    kms: Vec<(String, FakeKms)>,
}

fn specs(i: usize) -> (&'static str, &'static str) {
    match i % 3 {
        0 => ("SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1"),
        1 => ("HMAC_256", "RSAES_OAEP_SHA_1"),
        _ => ("HMAC_384", "RSAES_OAEP_SHA_1"),
    }
}

fn ceremony(token: &str, keys: usize) -> Ceremony {
    let hsm = SoftHsm::new(token);
    let dir = hsm.dir.path().join("media");
    std::fs::create_dir_all(dir.join("params")).unwrap();
    let (_card, entry) = custodian_card("alice");
    write_policy(&dir.join("policy.json"), 1, &[entry]);
    let mut kms = Vec::new();
    let mut plan = Vec::new();
    for i in 0..keys {
        let label = format!("key-{i:02}");
        let (spec, alg) = specs(i);
        let k = FakeKms::new(2048);
        let rel = format!("params/{label}.json");
        k.write_params(&dir.join(&rel), 600);
        plan.push(serde_json::json!({"label": label, "key_spec": spec, "source": "generate",
            "targets": [{"name": "eu-west-1", "params": rel, "wrapping_algorithm": alg, "wrapping_key_sha256": k.fingerprint()}]}));
        kms.push((label, k));
    }
    let file = dir.join("ceremony.json");
    std::fs::write(
        &file,
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "byok-ceremony/ceremony/v1",
            "ceremony_id": "hostile",
            "purpose": "attacked",
            "hsm": {"module": SOFTHSM_MODULE, "token_label": token},
            "policy": "policy.json",
            "keys": plan,
        }))
        .unwrap(),
    )
    .unwrap();
    Ceremony { hsm, file, kms }
}

impl Ceremony {
    /// `ceremony run` with the parameters digest given (as from the bastion).
    fn confirmed(&self, file: &Path, out: &Path, digest: &str) -> Command {
        self.run_cmd(
            file,
            out,
            &["--non-interactive", "--expect-parameters-digest", digest],
        )
    }

    fn run_cmd(&self, file: &Path, out: &Path, extra: &[&str]) -> Command {
        let mut c = self.hsm.airgap();
        c.args(["ceremony", "run"])
            .arg(file)
            .arg("--out")
            .arg(out)
            .args(["--pin-env", "BYOK_TEST_PIN"])
            .args(extra)
            .stdin(Stdio::null());
        c
    }

    fn keys_on_token(&self) -> Vec<String> {
        let mut a = vec!["keys".to_string()];
        a.extend(self.hsm.hsm_args());
        a.push("--json".into());
        let o = run(self.hsm.airgap().args(a));
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut labels: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["label"].as_str().unwrap().to_string())
            .filter(|l| l.starts_with("key-"))
            .collect();
        labels.sort();
        labels
    }
}

/// Every file below `dir` with its bytes, to prove nothing there changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                m.insert(p.clone(), Vec::new());
                m.extend(snapshot(&p));
            } else {
                m.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    m
}

#[test]
fn a_module_named_on_the_media_is_never_loaded() {
    let c = ceremony("hostile-module", 1);
    let media = c.file.parent().unwrap();
    let planted = media.join("params/libvendor.so");
    std::fs::copy(shared_object("hostile_module"), &planted).unwrap();
    let marker = c.hsm.path("planted-module-ran");
    let digest = params_digest(&c.file);
    for module in [
        "params/libvendor.so".to_string(),
        planted.to_str().unwrap().to_string(),
    ] {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&c.file).unwrap()).unwrap();
        v["hsm"]["module"] = module.clone().into();
        let file = media.join("planted.json");
        std::fs::write(&file, v.to_string()).unwrap();
        let o = run(c
            .hsm
            .airgap()
            .env("BYOK_TEST_MARKER", &marker)
            .args(["ceremony", "plan"])
            .arg(&file));
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(
            err.contains(&format!("expects the HSM module {module}"))
                && err.contains("nothing was loaded")
                && err.contains("--module"),
            "{err}"
        );
        let out = c.hsm.path("out-planted");
        let o = run(c
            .confirmed(&file, &out, &digest)
            .env("BYOK_TEST_MARKER", &marker));
        assert!(!o.status.success());
        assert!(stderr(&o).contains("nothing was loaded"), "{}", stderr(&o));
        assert!(!out.exists());
        assert!(!marker.exists(), "the planted module's constructor ran");
        // The old field for the init string is an expectation too.
        v["hsm"]["module"] = SOFTHSM_MODULE.into();
        v["hsm"]["module_init_string"] = "configdir='sql:/media/usb'".into();
        std::fs::write(&file, v.to_string()).unwrap();
        let o = run(c.hsm.airgap().args(["ceremony", "plan"]).arg(&file));
        assert!(
            !o.status.success() && stderr(&o).contains("init string"),
            "{}",
            stderr(&o)
        );
    }
    assert!(c.keys_on_token().is_empty());

    // The module comes from this workstation: plan says which, and from where.
    let o = run(c.hsm.airgap().args(["ceremony", "plan"]).arg(&c.file));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "HSM module: {SOFTHSM_MODULE} (from built-in default)"
        )),
        "{}",
        stderr(&o)
    );
    let o = run(c
        .hsm
        .airgap()
        .env("BYOK_PKCS11_MODULE", SOFTHSM_MODULE)
        .args(["ceremony", "plan"])
        .arg(&c.file));
    assert!(
        stderr(&o).contains("(from $BYOK_PKCS11_MODULE)"),
        "{}",
        stderr(&o)
    );
    let book = String::from_utf8_lossy(&o.stdout);
    assert!(
        book.contains(SOFTHSM_MODULE) && book.contains("parameters digest"),
        "{book}"
    );
    // A workstation config file that is not root-owned-and-private is refused.
    let conf = c.hsm.path("hsm.json");
    std::fs::write(&conf, format!("{{\"module\": \"{SOFTHSM_MODULE}\"}}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = run(c
        .hsm
        .airgap()
        .env("BYOK_HSM_CONFIG", &conf)
        .args(["ceremony", "plan"])
        .arg(&c.file));
    assert!(
        !o.status.success() && stderr(&o).contains("writable by group or others"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn names_that_leave_the_output_directory_are_refused_at_parse() {
    let c = ceremony("hostile-names", 2);
    let digest = params_digest(&c.file);
    // A sibling of --out with a file, which an attack would overwrite or delete.
    let parent = c.hsm.path("work");
    std::fs::create_dir(&parent).unwrap();
    let victim = parent.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep.txt"), b"precious").unwrap();
    let before = snapshot(&parent);
    let out = parent.join("out");
    let long = "x".repeat(65);
    let cases: Vec<(&str, &str, &str)> = vec![
        ("label", "..", "does not start with a letter or digit"),
        ("label", ".", "does not start with a letter or digit"),
        ("label", "a/b", "path separator"),
        ("label", "/abs", "path separator"),
        ("label", "../x", "path separator"),
        ("label", &long, "too long"),
        ("label", "bell\u{7}", "control character"),
        ("target", "..", "does not start with a letter or digit"),
        ("target", ".", "does not start with a letter or digit"),
        ("target", "victim/../..", "path separator"),
        ("ceremony_id", "../x", "path separator"),
    ];
    for (field, value, why) in cases {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&c.file).unwrap()).unwrap();
        match field {
            "label" => v["keys"][0]["label"] = value.into(),
            "target" => v["keys"][0]["targets"][0]["name"] = value.into(),
            _ => v["ceremony_id"] = value.into(),
        }
        let file = c.file.parent().unwrap().join("bad-names.json");
        std::fs::write(&file, v.to_string()).unwrap();
        for cmd in ["plan", "run"] {
            let o = if cmd == "plan" {
                run(c.hsm.airgap().args(["ceremony", "plan"]).arg(&file))
            } else {
                run(&mut c.confirmed(&file, &out, &digest))
            };
            assert!(!o.status.success(), "{field} {value:?} accepted by {cmd}");
            let err = stderr(&o);
            assert!(err.contains(why), "{field} {value:?}: {err}");
            assert!(err.contains("no HSM session was opened"), "{err}");
        }
        assert!(!out.exists());
        assert_eq!(
            snapshot(&parent),
            before,
            "{field} {value:?} touched a sibling"
        );
    }
    // Parameters and policy paths stay inside the ceremony file's directory.
    for (field, value) in [
        ("params", "../../work/victim/keep.txt"),
        ("policy", "/etc/passwd"),
    ] {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&c.file).unwrap()).unwrap();
        if field == "params" {
            v["keys"][0]["targets"][0]["params"] = value.into();
        } else {
            v["policy"] = value.into();
        }
        let file = c.file.parent().unwrap().join("bad-paths.json");
        std::fs::write(&file, v.to_string()).unwrap();
        let o = run(c.hsm.airgap().args(["ceremony", "plan"]).arg(&file));
        assert!(
            !o.status.success() && stderr(&o).contains("stay inside its directory"),
            "{}",
            stderr(&o)
        );
    }
    assert!(c.keys_on_token().is_empty());
}

#[test]
fn oversized_media_files_are_refused_unread() {
    let c = ceremony("hostile-sizes", 1);
    let media = c.file.parent().unwrap();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&c.file).unwrap()).unwrap();
    v["purpose"] = "x".repeat(2 * 1024 * 1024).into();
    let big = media.join("big.json");
    std::fs::write(&big, v.to_string()).unwrap();
    let o = run(c.hsm.airgap().args(["ceremony", "plan"]).arg(&big));
    assert!(
        !o.status.success() && stderr(&o).contains("more than any genuine ceremony file"),
        "{}",
        stderr(&o)
    );
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&c.file).unwrap()).unwrap();
    let huge = media.join("params/huge.json");
    std::fs::write(&huge, vec![b' '; 200 * 1024]).unwrap();
    v["keys"][0]["targets"][0]["params"] = "params/huge.json".into();
    std::fs::write(&big, v.to_string()).unwrap();
    let o = run(c.hsm.airgap().args(["ceremony", "plan"]).arg(&big));
    assert!(
        !o.status.success() && stderr(&o).contains("more than any genuine import-parameters file"),
        "{}",
        stderr(&o)
    );
    std::fs::write(media.join("policy.json"), vec![b' '; 1024 * 1024]).unwrap();
    let o = run(c.hsm.airgap().args(["ceremony", "plan"]).arg(&c.file));
    assert!(
        !o.status.success() && stderr(&o).contains("more than any genuine custodian policy"),
        "{}",
        stderr(&o)
    );
}

/// Substitute every target's parameters with the attacker's wrapping keys and
/// fix up the declared fingerprints to match, as someone with the media would.
fn substitute_parameters(c: &Ceremony) -> Vec<FakeKms> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&c.file).unwrap()).unwrap();
    let media = c.file.parent().unwrap();
    let mut attacker = Vec::new();
    for (i, key) in v["keys"].as_array_mut().unwrap().iter_mut().enumerate() {
        let evil = FakeKms::new(2048);
        let rel = key["targets"][0]["params"].as_str().unwrap().to_string();
        evil.write_params(&media.join(&rel), 600);
        key["targets"][0]["wrapping_key_sha256"] = evil.fingerprint().into();
        assert_ne!(evil.fingerprint(), c.kms[i].1.fingerprint());
        attacker.push(evil);
    }
    std::fs::write(&c.file, v.to_string()).unwrap();
    attacker
}

#[test]
fn substituted_wrapping_keys_need_a_digest_from_outside_the_media() {
    let c = ceremony("hostile-params", 2);
    let genuine = params_digest(&c.file);
    substitute_parameters(&c);
    let forged = params_digest(&c.file);
    assert_ne!(genuine, forged);
    // The file is self-consistent: plan accepts it (it can only show the digest).
    let o = run(c.hsm.airgap().args(["ceremony", "plan"]).arg(&c.file));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = c.hsm.path("out");

    // --non-interactive alone is not a confirmation.
    let o = run(&mut c.run_cmd(&c.file, &out, &["--non-interactive"]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--expect-parameters-digest")
            && stderr(&o).contains("--non-interactive alone is not enough"),
        "{}",
        stderr(&o)
    );
    // The bastion's digest of the genuine parameters: mismatch.
    let o = run(&mut c.confirmed(&c.file, &out, &genuine));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("parameters digest mismatch") && stderr(&o).contains("Do not continue"),
        "{}",
        stderr(&o)
    );
    // Interactive: it asks; a slip may be retried, a wrong digest stops.
    let script = format!(
        "{} ceremony run {} --out {} --pin-env BYOK_TEST_PIN",
        env!("CARGO_BIN_EXE_byok-airgap"),
        c.file.display(),
        out.display()
    );
    // `script` gives the command a terminal and types our input into it.
    let mut child = Command::new("script")
        .args(["-qec", &script, "/dev/null"])
        .env("SOFTHSM2_CONF", &c.hsm.conf)
        .env("BYOK_TEST_PIN", USER_PIN)
        .env_remove("BYOK_PKCS11_MODULE")
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("not hex\n{genuine}\n").as_bytes())
            .unwrap();
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    let o = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(text.contains("Type the parameters digest"), "{text}");
    assert!(text.contains("not 64 hex digits"), "{text}");
    assert!(text.contains("parameters digest mismatch"), "{text}");
    assert!(!out.exists(), "nothing written");
    assert!(c.keys_on_token().is_empty(), "nothing generated");

    // The attacker's own digest (from the media) is what a custodian would
    // read off this screen; only the bastion's value is to be typed. With the
    // genuine parameters back and their digest, the run goes ahead.
    let c2 = ceremony("hostile-params-ok", 2);
    let d = params_digest(&c2.file);
    let out2 = c2.hsm.path("out");
    let o = run(&mut c2.confirmed(&c2.file, &out2, &d));
    assert!(o.status.success(), "{}", stderr(&o));
    let t = std::fs::read_to_string(out2.join("transcript.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(t.lines().next().unwrap()).unwrap();
    assert_eq!(first["data"]["parameters_digest"], d);
    assert_eq!(
        first["data"]["confirmations"]["parameters_digest"],
        serde_json::json!({"value": d, "by": "expected_value"})
    );
    assert_eq!(
        first["data"]["confirmations"]["ceremony_id"],
        "skipped (--non-interactive)"
    );
    let summary = std::fs::read_to_string(out2.join("SUMMARY.md")).unwrap();
    assert!(
        summary.contains(&d[..4]) && summary.contains(&c2.kms[0].1.fingerprint()),
        "{summary}"
    );
}

/// Run `ceremony run` under the crash injector, killed at its `at`-th file
/// operation under `out`; returns whether it was killed.
fn run_killed_at(c: &Ceremony, out: &Path, digest: &str, at: usize) -> bool {
    let o = run(c
        .confirmed(&c.file, out, digest)
        .env("LD_PRELOAD", shared_object("kill_at"))
        .env("BYOK_KILL_UNDER", out)
        .env("BYOK_KILL_AT", at.to_string()));
    if o.status.signal() == Some(9) {
        return true;
    }
    assert!(o.status.success(), "killed at {at}: {}", stderr(&o));
    false
}

#[test]
fn sigkill_at_many_points_then_resume_gives_exactly_one_key_each() {
    let c = ceremony("hostile-kill", 20);
    let digest = params_digest(&c.file);
    let parent = c.hsm.path("work");
    std::fs::create_dir(&parent).unwrap();
    std::fs::create_dir(parent.join("sibling")).unwrap();
    std::fs::write(parent.join("sibling/keep.txt"), b"precious").unwrap();
    let before = snapshot(&parent);
    let out = parent.join("out");
    // Points spread over the first run and every resume: the first write
    // (torn first entry), fsyncs, mkdirs, mid-line writes, renames…
    let points = [1, 2, 4, 9, 15, 6, 21, 11, 27, 8, 17, 33, 13, 24, 5, 19];
    let mut kills = 0;
    for at in points {
        if run_killed_at(&c, &out, &digest, at) {
            kills += 1;
        }
    }
    assert!(kills >= 12, "only {kills} runs were killed");
    let o = run(&mut c.confirmed(&c.file, &out, &digest));
    assert!(o.status.success(), "{}", stderr(&o));
    let want: Vec<String> = (0..20).map(|i| format!("key-{i:02}")).collect();
    assert_eq!(c.keys_on_token(), want, "exactly one key per label");
    let t =
        byok_ceremony::ceremony::transcript::verify_file(&out.join("transcript.jsonl")).unwrap();
    assert!(t
        .entries
        .iter()
        .any(|e| e.step.name() == "ceremony-complete"));
    let steps = |s: &str| t.entries.iter().filter(|e| e.step.name() == s).count();
    assert_eq!(steps("key-generated"), 20);
    assert_eq!(steps("wrapped"), 20);
    assert!(steps("resumed") >= 10);
    assert!(steps("transcript-truncated") >= 1, "no torn line was met");
    every_bundle_unwraps(&c, &out);
    // Nothing but the ceremony's own files, and the chain verifies as a whole.
    let mut top = entries(&out);
    top.retain(|n| !n.starts_with("key-"));
    assert_eq!(top, ["SUMMARY.md", "transcript.jsonl"]);
    let o = run(Command::new(env!("CARGO_BIN_EXE_byok-airgap"))
        .args(["ceremony", "verify"])
        .arg(&out)
        .arg("--policy")
        .arg(c.file.parent().unwrap().join("policy.json")));
    assert!(stderr(&o).contains("only 0 of the 1"), "{}", stderr(&o));
    let mut after = snapshot(&parent);
    after.retain(|p, _| !p.starts_with(&out));
    let mut before_sib = before.clone();
    before_sib.retain(|p, _| !p.starts_with(&out));
    assert_eq!(after, before_sib, "a sibling of --out changed");
}

/// The transcript's lines and each line's `step`.
fn transcript_steps(out: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(out.join("transcript.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (l.to_string(), v["step"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Keep the first `n` lines of the transcript, as a power cut that lost every
/// entry after the last fsync would.
fn cut_transcript(out: &Path, lines: &[(String, String)], n: usize) {
    let kept: String = lines[..n].iter().map(|(l, _)| format!("{l}\n")).collect();
    std::fs::write(out.join("transcript.jsonl"), kept).unwrap();
}

#[test]
fn entries_lost_after_the_last_fsync_are_redone_on_resume() {
    // Keys are carried out in batches (group commit): a power cut can lose
    // every entry after the batch's last fsync, while the keys are on the
    // token and bundles on disk. Each prefix below is such a state; SIGKILL
    // cannot produce them (the page cache survives it), so they are cut here.
    let keys = 40;
    let c = ceremony("power-cut", keys);
    let digest = params_digest(&c.file);
    let out = c.hsm.path("out");
    let o = run(&mut c.confirmed(&c.file, &out, &digest));
    assert!(o.status.success(), "{}", stderr(&o));
    let first = transcript_steps(&out);
    let at = |step: &str, nth: usize| {
        first
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| s == step)
            .nth(nth)
            .map(|(i, _)| i)
            .unwrap()
    };
    // Two batches: the second one's intents come after the first one's keys.
    let last_intent = at("key-intent", keys - 1);
    assert!(
        at("key-generated", 0) < last_intent,
        "one batch only: group commit not exercised"
    );
    let cuts = [
        (
            "among the second batch's wrapped entries",
            at("wrapped", keys - 3),
        ),
        (
            "among its key-generated entries",
            at("key-generated", keys - 5),
        ),
        ("right after its intents were fsynced", last_intent + 1),
    ];
    for (what, n) in cuts {
        cut_transcript(&out, &first, n);
        let lost_keys = first[n..]
            .iter()
            .filter(|(_, s)| s == "key-generated")
            .count();
        let lost_wraps = first[n..].iter().filter(|(_, s)| s == "wrapped").count();
        let before = transcript_steps(&out).len();
        let o = run(&mut c.confirmed(&c.file, &out, &digest));
        assert!(o.status.success(), "cut {what}: {}", stderr(&o));
        assert_eq!(
            c.keys_on_token().len(),
            keys,
            "cut {what}: a key was generated twice"
        );
        let resumed = transcript_steps(&out);
        let added = |step: &str| resumed[before..].iter().filter(|(_, s)| s == step).count();
        assert_eq!(added("key-generated"), lost_keys, "cut {what}");
        assert_eq!(added("wrapped"), lost_wraps, "cut {what}");
        assert_eq!(
            added("key-intent"),
            0,
            "cut {what}: intents are never redone"
        );
        assert_eq!(
            added("discarded-unrecorded-output"),
            lost_wraps,
            "cut {what}: each unrecorded bundle is discarded before it is written again"
        );
        for (line, step) in &resumed[before..] {
            if step == "key-generated" {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(
                    v["data"]["adopted_after_interruption"], true,
                    "cut {what}: {line}"
                );
            }
        }
    }
    byok_ceremony::ceremony::transcript::verify_file(&out.join("transcript.jsonl")).unwrap();
    every_bundle_unwraps(&c, &out);
}

/// Every key's one bundle, and nothing else in its label directory, unwraps
/// (with the test's KMS private key) to a key of the planned spec.
fn every_bundle_unwraps(c: &Ceremony, out: &Path) {
    for (label, k) in &c.kms {
        let dir = out.join(label).join("eu-west-1");
        let token = std::fs::read(dir.join("ImportToken.bin")).unwrap();
        let i: usize = label[4..].parse().unwrap();
        let (spec, alg) = specs(i);
        check_output(k, &dir, spec, alg, &token);
        assert_eq!(entries(&out.join(label)), ["eu-west-1"], "{label}");
    }
}

#[test]
fn a_key_swapped_between_crash_and_resume_is_refused() {
    let c = ceremony("hostile-swap", 3);
    let digest = params_digest(&c.file);
    let out = c.hsm.path("out");
    // Interrupted once the first key's wrap is recorded.
    interrupted_after_first_wrap(&c, &out, &digest);
    // Replace key-00 by a key generated on the token (so CKA_LOCAL) with the
    // same label and CKA_ID: only its check value can tell.
    common::pkcs11::replace_key(&c.hsm, "key-00", |session, label, id| {
        use cryptoki::object::Attribute;
        session
            .generate_key(
                &cryptoki::mechanism::Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(true),
                    Attribute::Label(label.to_vec()),
                    Attribute::Id(id.to_vec()),
                    Attribute::ValueLen(32.into()),
                    Attribute::Sign(true),
                ],
            )
            .unwrap();
    });
    let o = run(&mut c.confirmed(&c.file, &out, &digest));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("key \"key-00\": its check value is now")
            && stderr(&o).contains("not the one this ceremony generated"),
        "{}",
        stderr(&o)
    );
    // A key imported with a value the attacker knows (C_CreateObject), same
    // label and CKA_ID: the token says it was not generated there.
    common::pkcs11::replace_key(&c.hsm, "key-00", |session, label, id| {
        use cryptoki::object::{Attribute, KeyType, ObjectClass};
        session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Label(label.to_vec()),
                Attribute::Id(id.to_vec()),
                Attribute::Value(vec![7u8; 32]),
                Attribute::Sign(true),
            ])
            .unwrap();
    });
    let o = run(&mut c.confirmed(&c.file, &out, &digest));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not generated inside this token (CKA_LOCAL is not true)"),
        "{}",
        stderr(&o)
    );
    // Nothing was wrapped under either impostor.
    let t = std::fs::read_to_string(out.join("transcript.jsonl")).unwrap();
    assert_eq!(t.matches("\"step\":\"wrapped\"").count(), 1, "{t}");
}

#[test]
fn symlinks_planted_in_the_output_directory_are_not_followed() {
    let c = ceremony("hostile-links", 2);
    let digest = params_digest(&c.file);
    let out = c.hsm.path("out");
    interrupted_after_first_wrap(&c, &out, &digest);
    let victim = c.hsm.path("victim");
    std::fs::create_dir(&victim).unwrap();
    // The transcript replaced by a symlink to a copy outside --out.
    let copy = victim.join("transcript.jsonl");
    std::fs::rename(out.join("transcript.jsonl"), &copy).unwrap();
    std::os::unix::fs::symlink(&copy, out.join("transcript.jsonl")).unwrap();
    let before = snapshot(&victim);
    let o = run(&mut c.confirmed(&c.file, &out, &digest));
    assert!(
        !o.status.success() && stderr(&o).contains("is a symlink or not a plain file"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&victim), before, "written through the symlink");
    // Back in place, a label directory replaced by a symlink to a directory outside.
    std::fs::remove_file(out.join("transcript.jsonl")).unwrap();
    std::fs::rename(&copy, out.join("transcript.jsonl")).unwrap();
    let pending = c
        .kms
        .iter()
        .map(|(l, _)| l.clone())
        .find(|l| {
            !transcript_steps(&out).iter().any(|(line, step)| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                step == "wrapped" && v["data"]["label"] == l.as_str()
            })
        })
        .expect("a key not recorded as wrapped yet");
    // The victim holds what resume would remove if it followed the link: the
    // pending key's bundle directories, written but not recorded.
    let moved = std::fs::read_dir(out.join(&pending))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            std::fs::rename(e.path(), victim.join(e.file_name())).unwrap();
        })
        .count();
    assert!(moved > 0, "the pending key has no bundle on disk to plant");
    std::fs::remove_dir(out.join(&pending)).unwrap();
    std::os::unix::fs::symlink(&victim, out.join(&pending)).unwrap();
    let before = snapshot(&victim);
    let o = run(&mut c.confirmed(&c.file, &out, &digest));
    assert!(
        !o.status.success() && stderr(&o).contains("is a symlink or not a directory"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&victim), before, "written through the symlink");
}

/// A run of `c` into `out` interrupted once the first bundle is recorded and
/// before the second is: the run completes, then its transcript is cut after
/// the first `wrapped` entry, as a power cut before the batch's last fsync
/// leaves it (the other bundles are on disk, unrecorded).
fn interrupted_after_first_wrap(c: &Ceremony, out: &Path, digest: &str) {
    let o = run(&mut c.confirmed(&c.file, out, digest));
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = transcript_steps(out);
    let first = lines.iter().position(|(_, s)| s == "wrapped").unwrap();
    cut_transcript(out, &lines, first + 1);
}
