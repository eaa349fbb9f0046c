//! The peers of the audit and Config rule tests: LocalStack (KMS, S3) and
//! moto's server (DynamoDB, RDS, Security Hub, STS, Config), and a key whose
//! material went through a real ceremony (included with `#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::common::*;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `export K=V` lines of a start script.
pub fn exports(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['\'', '"']).to_string()))
        .collect()
}

/// LocalStack (kms,s3) and moto (dynamodb, rds), stopped when dropped.
pub struct Peers {
    ls_state: tempfile::TempDir,
    moto_state: tempfile::TempDir,
    /// The bastion's own state directory (receipts, alias-move records).
    pub bastion_state: tempfile::TempDir,
    /// What the start scripts exported.
    pub env: Vec<(String, String)>,
}

impl Peers {
    /// Start both (stopped when dropped).
    pub fn start() -> Self {
        let ls_state = tempfile::tempdir().unwrap();
        let moto_state = tempfile::tempdir().unwrap();
        let ls = Command::new("bash")
            .arg(root().join("scripts/localstack/start.sh"))
            .env("BYOK_LOCALSTACK_STATE", ls_state.path())
            .env("BYOK_LOCALSTACK_SERVICES", "kms,s3")
            .output()
            .expect("start.sh runs");
        let mut peers = Peers {
            ls_state,
            moto_state,
            bastion_state: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        };
        assert!(
            ls.status.success(),
            "LocalStack did not start:\n{}",
            stderr(&ls)
        );
        peers.env = exports(&ls);
        let moto = Command::new("bash")
            .arg(root().join("scripts/moto/start.sh"))
            .env("BYOK_MOTO_STATE", peers.moto_state.path())
            .output()
            .expect("moto start.sh runs");
        assert!(
            moto.status.success(),
            "moto did not start:\n{}",
            stderr(&moto)
        );
        peers.env.extend(exports(&moto));
        for k in [
            "AWS_ENDPOINT_URL_KMS",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ENDPOINT_URL_RDS",
            "AWS_ENDPOINT_URL_SECURITYHUB",
            "AWS_ENDPOINT_URL_STS",
        ] {
            assert!(
                peers.env.iter().any(|(n, _)| n == k),
                "{k}: {:?}",
                peers.env
            );
        }
        peers
    }

    /// A variable a start script exported.
    pub fn var(&self, k: &str) -> String {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    /// `c` with the peers' endpoints, credentials and this test's state directory.
    pub fn with_env<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.env("BYOK_STATE_DIR", self.bastion_state.path().join("state"))
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
    }

    /// byok-bastion against the peers.
    pub fn bastion(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_byok-bastion"));
        self.with_env(&mut c);
        c
    }

    /// Run Python (boto3, from the LocalStack venv) with `args` as sys.argv[1:].
    pub fn python(&self, code: &str, args: &[&str]) -> String {
        let mut c = Command::new(self.var("BYOK_LOCALSTACK_PYTHON"));
        self.with_env(&mut c).arg("-c").arg(code).args(args);
        let o = run(&mut c);
        assert!(o.status.success(), "python failed:\n{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/localstack/stop.sh"))
            .env("BYOK_LOCALSTACK_STATE", self.ls_state.path())
            .output();
        let _ = Command::new("bash")
            .arg(root().join("scripts/moto/stop.sh"))
            .env("BYOK_MOTO_STATE", self.moto_state.path())
            .output();
    }
}

pub fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what} failed:\n{}", stderr(&o));
    o
}

/// A key imported through a ceremony, with what `move-alias` needs.
pub struct Imported {
    _card: SoftHsm,
    _hsm: SoftHsm,
    /// The custodian policy.
    pub policy: PathBuf,
    /// The signed bundle directory.
    pub dir: PathBuf,
    /// The key ARN.
    pub arn: String,
}

/// A SYMMETRIC_DEFAULT key with material from a real ceremony: the bastion
/// creates it and fetches parameters, SoftHSM2 wraps, one custodian signs,
/// the bastion imports. Returns the key ARN.
pub fn imported_key(p: &Peers) -> String {
    ceremony(p).arn
}

pub fn ceremony(p: &Peers) -> Imported {
    let (card, entry) = custodian_card("alice");
    let hsm = SoftHsm::new("audit");
    let policy = hsm.path("policy.json");
    write_policy(&policy, 1, &[entry]);
    let params_dir = hsm.path("params");
    let o = ok(
        run(p.bastion().args([
            "prepare",
            "--create",
            "SYMMETRIC_DEFAULT",
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
            "--out-dir",
            params_dir.to_str().unwrap(),
            "--json",
        ])),
        "prepare",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let params = PathBuf::from(v[0]["params_file"].as_str().unwrap());
    let arn = v[0]["key_arn"].as_str().unwrap().to_string();
    let fp = v[0]["wrapping_key_sha256"].as_str().unwrap().to_string();
    let out = hsm.path("orders-prod");
    bastion_wrap(&hsm, &params, "SYMMETRIC_DEFAULT", "orders-prod", &fp, &out);
    sign(&card, "alice", &out);
    ok(
        run(p.bastion().args([
            "import",
            out.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--params",
            params.to_str().unwrap(),
            "--no-expiry",
        ])),
        "import",
    );
    Imported {
        _card: card,
        _hsm: hsm,
        policy,
        dir: out,
        arn,
    }
}
