//! What the bastion trusts (issue 13): "proven" only when KMS's own answer
//! ties the key to this bundle; receipts and parameters records only from the
//! bastion's own state directory, never from the media; and the endpoint rule
//! applied to the endpoint the SDK actually uses, before any request.
#![cfg(feature = "bastion")]

mod common;
#[path = "common/localstack.rs"]
mod localstack;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use localstack::*;

const SOME_KEY: &str =
    "arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555";

/// byok-bastion with an empty environment: fixed credentials and Region, no
/// shared files unless the test writes them, its own state directory.
fn bare_bastion(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_byok-bastion"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env("BYOK_STATE_DIR", dir.join("state"));
    c
}

fn prepare_args(out: &Path) -> Vec<String> {
    [
        "prepare",
        "--key",
        SOME_KEY,
        "--wrapping-algorithm",
        "RSAES_OAEP_SHA_1",
        "--out-dir",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// A loopback listener that records whether anything connected.
struct Listener(TcpListener);

impl Listener {
    fn new() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Listener(l)
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    fn connected(&self) -> bool {
        match self.0.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn refused_before_any_request(o: &Output, source: &str, problem: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "accepted:\n{err}");
    assert!(
        err.contains("refusing KMS endpoint") && err.contains(source) && err.contains(problem),
        "expected a refusal ({source}, {problem}):\n{err}"
    );
    assert!(
        !err.contains("KMS endpoint: "),
        "a client was connected:\n{err}"
    );
}

#[test]
fn hostile_endpoints_are_refused_from_every_source_before_any_request() {
    let t = tempfile::tempdir().unwrap();
    let l = Listener::new();
    let port = l.port();
    let out = t.path().join("params");

    // Userinfo: the real host is after the @ (here, our listener: nothing may reach it).
    let o = run(bare_bastion(t.path())
        .env("AWS_ENDPOINT_URL_KMS", "http://localhost:1@evil.example/")
        .args(prepare_args(&out)));
    refused_before_any_request(&o, "from AWS_ENDPOINT_URL_KMS", "user name or password");
    let o = run(bare_bastion(t.path())
        .env(
            "AWS_ENDPOINT_URL_KMS",
            format!("http://localhost:1@127.0.0.1:{port}/"),
        )
        .args(prepare_args(&out)));
    refused_before_any_request(&o, "from AWS_ENDPOINT_URL_KMS", "user name or password");

    // A name that merely starts like a loopback address.
    let o = run(bare_bastion(t.path())
        .args(["--endpoint-url", "http://127.0.0.1.evil.example/"])
        .args(prepare_args(&out)));
    refused_before_any_request(&o, "from --endpoint-url", "127.0.0.1.evil.example");

    // The shared endpoint variable.
    let o = run(bare_bastion(t.path())
        .env("AWS_ENDPOINT_URL", "http://10.0.0.1")
        .args(prepare_args(&out)));
    refused_before_any_request(&o, "from AWS_ENDPOINT_URL)", "10.0.0.1");

    // The profile's endpoint_url, and a services section, in the shared config file.
    let config = t.path().join("config");
    std::fs::write(
        &config,
        "[default]\nregion = us-east-1\nendpoint_url = http://10.0.0.1\n\n\
         [profile svc]\nregion = us-east-1\nservices = hostile\n\n\
         [services hostile]\nkms =\n  endpoint_url = http://10.0.0.2:4566\n",
    )
    .unwrap();
    let o = run(bare_bastion(t.path())
        .env("AWS_CONFIG_FILE", &config)
        .args(prepare_args(&out)));
    refused_before_any_request(&o, "from the profile's endpoint_url", "10.0.0.1");
    let o = run(bare_bastion(t.path())
        .env("AWS_CONFIG_FILE", &config)
        .args(["--profile", "svc"])
        .args(prepare_args(&out)));
    refused_before_any_request(&o, "from the profile's services section", "10.0.0.2");
    assert!(!l.connected(), "a refused endpoint was contacted");
}

/// Run `cmd` until something connects to `l` (then stop it); its stderr.
fn first_connection(mut cmd: Command, l: &Listener) -> String {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut connected = false;
    while start.elapsed() < Duration::from_secs(60) {
        if l.connected() {
            connected = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(connected, "nothing reached the accepted endpoint:\n{err}");
    err
}

#[test]
fn https_anywhere_and_http_on_loopback_are_used() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("params");
    let l = Listener::new();
    let mut c = bare_bastion(t.path());
    c.args(["--endpoint-url", &format!("https://127.0.0.1:{}", l.port())])
        .args(prepare_args(&out));
    let err = first_connection(c, &l);
    assert!(
        err.contains(&format!(
            "KMS endpoint: https://127.0.0.1:{}/ (from --endpoint-url)",
            l.port()
        )),
        "{err}"
    );
    let l = Listener::new();
    let config = t.path().join("config");
    std::fs::write(
        &config,
        "[default]\nregion = us-east-1\nendpoint_url = http://10.0.0.1\n",
    )
    .unwrap();
    let mut c = bare_bastion(t.path());
    c.env("AWS_CONFIG_FILE", &config)
        .env(
            "AWS_ENDPOINT_URL_KMS",
            format!("http://127.0.0.1:{}", l.port()),
        )
        .args(prepare_args(&out));
    let err = first_connection(c, &l);
    assert!(
        err.contains(&format!(
            "KMS endpoint: http://127.0.0.1:{}/ (from AWS_ENDPOINT_URL_KMS)",
            l.port()
        )),
        "{err}"
    );
}

fn policy_for(dir: &Path, entry: &serde_json::Value) -> PathBuf {
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [entry]}).to_string(),
    )
    .unwrap();
    policy
}

/// `prepare --key KEY` into `out_dir`; (params file, fingerprint).
fn prepare_key(ls: &LocalStack, arn: &str, out_dir: &Path) -> (PathBuf, String) {
    let o = ok(
        run(ls.bastion().args([
            "prepare",
            "--key",
            arn,
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--json",
        ])),
        "prepare --key",
    );
    let v = json(&o);
    (
        PathBuf::from(v[0]["params_file"].as_str().unwrap()),
        v[0]["wrapping_key_sha256"].as_str().unwrap().to_string(),
    )
}

#[test]
fn aes_is_proven_only_by_this_bastions_material_and_media_receipts_count_for_nothing() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("trust-aes");
    let (alice_t, alice) = custodian_card("alice");
    let policy = policy_for(hsm.dir.path(), &alice);
    let (pa, arn, fpa) = prepare(
        &ls,
        &hsm.path("pa"),
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
    );
    let (pb, fpb) = prepare_key(&ls, &arn, &hsm.path("pb"));
    let bundle = |params: &Path, fp: &str, label: &str| -> PathBuf {
        let out = hsm.path(label);
        bastion_wrap(&hsm, params, "SYMMETRIC_DEFAULT", label, fp, &out);
        sign(&alice_t, "alice", &out);
        out
    };
    let a = bundle(&pa, &fpa, "aes-a");
    let b = bundle(&pb, &fpb, "aes-b");
    let cmd = |ls_cmd: &mut Command, verb: &str, dir: &Path, extra: &[&str]| {
        run(ls_cmd
            .arg(verb)
            .arg(dir)
            .arg("--policy")
            .arg(&policy)
            .args(extra))
    };
    let import = |dir: &Path, params: &Path, extra: &[&str]| {
        let mut args = vec![
            "--params",
            params.to_str().unwrap(),
            "--no-expiry",
            "--json",
        ];
        args.extend_from_slice(extra);
        cmd(&mut ls.bastion(), "import", dir, &args)
    };

    // A forged receipt on the media (the old place, a foreign key, this bundle's
    // digests): ignored, said so, and the bundle is imported.
    let blob = std::fs::read(a.join("EncryptedKeyMaterial.bin")).unwrap();
    let transcript = std::fs::read_to_string(a.join("transcript.jsonl")).unwrap();
    let last = transcript
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap();
    let forged = serde_json::json!({
        "key_arn": "arn:aws:kms:us-east-1:999999999999:key/foreign",
        "key_material_id": "ee".repeat(32),
        "import_type": "NEW_KEY_MATERIAL",
        "imported_at": "2026-01-01T00:00:00Z",
        "ceremony_id": "forged",
        "transcript_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(last.as_bytes())),
        "signers": ["alice"],
        "encrypted_key_material_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&blob)),
    });
    std::fs::write(hsm.path("aes-a.import-receipt.json"), forged.to_string()).unwrap();
    let o = ok(import(&a, &pa, &[]), "import A");
    let receipt = json(&o);
    assert_eq!(receipt["key_arn"], arn.as_str(), "{receipt}");
    assert_eq!(receipt["how"], "imported");
    assert!(
        stderr(&o).contains("ignoring 1 receipt file(s) next to")
            && stderr(&o).contains("imported into"),
        "{}",
        stderr(&o)
    );
    let id_a = receipt["key_material_id"].as_str().unwrap().to_string();
    assert_eq!(id_a.len(), 64, "{receipt}");

    // Bundle B, signed, for the same key but never imported: the round trip works
    // (with A's material), and that is all it is.
    let o = cmd(&mut ls.bastion(), "verify", &b, &["--json"]);
    assert!(!o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["verdict"], "usable-not-proven", "{v}");
    assert!(
        stderr(&o).contains("not proven: ")
            && stderr(&o).contains("usable, not proven: Encrypt/Decrypt round trip works")
            && stderr(&o).contains("no receipt of importing this bundle"),
        "{}",
        stderr(&o)
    );
    let o = cmd(
        &mut ls.bastion(),
        "move-alias",
        &b,
        &["--alias", "alias/trust-aes"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("the alias stays where it is: not proven"),
        "{}",
        stderr(&o)
    );
    // rotate finds no receipt of this bastion for B: nothing is rotated.
    let o = cmd(&mut ls.bastion(), "rotate", &b, &[]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("no receipt of importing")
            && !stderr(&o).contains(&format!("rotated {arn}")),
        "{}",
        stderr(&o)
    );

    // A is proven by its material ID...
    let o = ok(
        cmd(&mut ls.bastion(), "verify", &a, &["--json"]),
        "verify A",
    );
    let v = json(&o);
    assert_eq!(v["verdict"], "proven", "{v}");
    assert_eq!(v["current_key_material_id"], id_a.as_str(), "{v}");
    // ...but not for a bastion without its receipt.
    let other = tempfile::tempdir().unwrap();
    let o = cmd(
        ls.bastion()
            .env("BYOK_STATE_DIR", other.path().join("state")),
        "verify",
        &a,
        &[],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("has no receipt of importing this bundle"),
        "{}",
        stderr(&o)
    );
    // A parameters file this bastion did not write (another bastion's state) is refused...
    let o = run(ls
        .bastion()
        .env("BYOK_STATE_DIR", other.path().join("state"))
        .args(["import"])
        .arg(&b)
        .arg("--policy")
        .arg(&policy)
        .arg("--params")
        .arg(&pb)
        .args(["--no-expiry", "--new-key-material"]));
    assert!(
        !o.status.success() && stderr(&o).contains("is not a parameters file this bastion wrote"),
        "{}",
        stderr(&o)
    );
    // ...and so is its own file once changed (same token, other bytes).
    let changed = hsm.path("pb-changed.json");
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&pb).unwrap()).unwrap();
    std::fs::write(&changed, p.to_string()).unwrap();
    let o = import(&b, &changed, &["--new-key-material"]);
    assert!(
        !o.status.success() && stderr(&o).contains("was changed after prepare"),
        "{}",
        stderr(&o)
    );

    // B imported as new material: before rotate KMS still uses A's, and
    // LocalStack cannot list the pending material: not proven.
    let o = ok(import(&b, &pb, &["--new-key-material"]), "import B");
    let id_b = json(&o)["key_material_id"].as_str().unwrap().to_string();
    assert_ne!(id_a, id_b);
    let o = cmd(&mut ls.bastion(), "verify", &b, &["--json"]);
    assert!(!o.status.success());
    assert_eq!(json(&o)["verdict"], "usable-not-proven");
    assert!(
        stderr(&o).contains(&format!("current KeyMaterialId is {id_a}, not {id_b}")),
        "{}",
        stderr(&o)
    );
    let o = ok(
        cmd(&mut ls.bastion(), "rotate", &b, &["--json"]),
        "rotate B",
    );
    assert_eq!(json(&o)["after"], id_b.as_str());
    ok(cmd(&mut ls.bastion(), "verify", &b, &[]), "verify B");
    // Now A's material is no longer current: A is usable (old material still
    // decrypts), not proven.
    let o = cmd(&mut ls.bastion(), "verify", &a, &[]);
    assert!(
        !o.status.success() && stderr(&o).contains("usable, not proven"),
        "{}",
        stderr(&o)
    );
    let o = ok(
        cmd(
            &mut ls.bastion(),
            "move-alias",
            &b,
            &["--alias", "alias/trust-aes", "--json"],
        ),
        "move-alias B",
    );
    assert_eq!(json(&o)["key"], arn.as_str());
}

#[test]
fn prepare_reuses_only_parameters_it_wrote_and_keeps_them_inside_the_draft() {
    let ls = LocalStack::start();
    let hsm = SoftHsm::new("trust-params");
    let (_alice_t, alice) = custodian_card("alice");
    policy_for(hsm.dir.path(), &alice);
    let (_, arn, _) = prepare(&ls, &hsm.path("first"), "HMAC_256", "RSAES_OAEP_SHA_1");
    let draft = |params: &str| {
        serde_json::json!({
            "format": "byok-ceremony/ceremony/v1", "ceremony_id": "trust-params", "purpose": "test",
            "hsm": {"module": SOFTHSM_MODULE, "token_label": "trust-params"}, "policy": "policy.json",
            "keys": [{"label": "hooks", "key_spec": "HMAC_256", "source": "generate", "targets": [
                {"name": "us-east-1", "params": params, "wrapping_algorithm": "RSAES_OAEP_SHA_1", "kms_key": arn}]}]
        })
        .to_string()
    };
    let prepare_ceremony = |draft_name: &str, out: &str, state: Option<&Path>| {
        let mut c = ls.bastion();
        if let Some(s) = state {
            c.env("BYOK_STATE_DIR", s.join("state"));
        }
        run(c.args([
            "prepare",
            "--ceremony",
            hsm.path(draft_name).to_str().unwrap(),
            "--out",
            hsm.path(out).to_str().unwrap(),
            "--json",
        ]))
    };
    // Params paths that leave the draft's directory are refused before any request.
    for escape in ["../escape.json", "/escape.json"] {
        std::fs::write(hsm.path("escape.json"), draft(escape)).unwrap();
        let o = prepare_ceremony("escape.json", "escape-out.json", None);
        assert!(
            !o.status.success() && !stderr(&o).contains("KMS endpoint"),
            "{escape}: {}",
            stderr(&o)
        );
        assert!(!hsm.path("escape-out.json").exists());
    }
    // A parameters file planted under the draft's path (fetched by someone else,
    // with another wrapping key): not reused.
    std::fs::write(hsm.path("draft.json"), draft("params/hooks.json")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let o = prepare_ceremony("draft.json", "planted.json", Some(other.path()));
    ok(o, "another bastion's prepare");
    std::fs::remove_file(hsm.path("planted.json")).unwrap();
    let o = prepare_ceremony("draft.json", "ceremony.json", None);
    assert!(
        !o.status.success()
            && stderr(&o).contains("params/hooks.json exists but this bastion did not write it"),
        "{}",
        stderr(&o)
    );
    assert!(!hsm.path("ceremony.json").exists());
    // Removed, it is fetched (and recorded); a re-run keeps this bastion's own file.
    std::fs::remove_file(hsm.path("params/hooks.json")).unwrap();
    let o = ok(
        prepare_ceremony("draft.json", "ceremony.json", None),
        "prepare",
    );
    assert_eq!(json(&o)[0]["kept"], false);
    let o = ok(
        prepare_ceremony("draft.json", "ceremony-2.json", None),
        "prepare again",
    );
    assert_eq!(json(&o)[0]["kept"], true, "{}", stderr(&o));
}
