//! LocalStack and the steps the bastion tests share (included by each
//! bastion test binary with `#[path]`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::common::*;

/// LocalStack for this test binary, stopped when dropped (also on panic).
pub struct LocalStack {
    state: tempfile::TempDir,
    /// The bastion's own state directory for this test binary's LocalStack.
    pub bastion_state: tempfile::TempDir,
    /// What start.sh exported (endpoint, credentials, Region).
    pub env: Vec<(String, String)>,
}

impl LocalStack {
    /// Start LocalStack with KMS only (stopped when dropped).
    pub fn start() -> Self {
        Self::start_with("kms")
    }

    /// Start LocalStack with these services (comma-separated; stopped when dropped).
    pub fn start_with(services: &str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let state = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(root.join("scripts/localstack/start.sh"))
            .env("BYOK_LOCALSTACK_STATE", state.path())
            .env("BYOK_LOCALSTACK_SERVICES", services)
            .output()
            .expect("start.sh runs");
        assert!(
            out.status.success(),
            "LocalStack did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches(['\'', '"']).to_string()))
            .collect::<Vec<_>>();
        assert!(
            env.iter().any(|(k, _)| k == "AWS_ENDPOINT_URL_KMS"),
            "{env:?}"
        );
        LocalStack {
            state,
            bastion_state: tempfile::tempdir().unwrap(),
            env,
        }
    }

    /// byok-bastion against this LocalStack, with this test's own state directory.
    pub fn bastion(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_byok-bastion"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.env_remove("AWS_PROFILE");
        c.env("BYOK_STATE_DIR", self.bastion_state.path().join("state"));
        c
    }

    /// A variable start.sh exported.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The LocalStack endpoint URL.
    pub fn endpoint(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "AWS_ENDPOINT_URL_KMS")
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    /// scripts/localstack/kms_peer.py against this LocalStack.
    pub fn peer(&self) -> Command {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = self
            .env
            .iter()
            .find(|(k, _)| k == "BYOK_LOCALSTACK_PYTHON")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "python3".into());
        let mut c = Command::new(python);
        c.arg(root.join("scripts/localstack/kms_peer.py"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let _ = Command::new("bash")
            .arg(root.join("scripts/localstack/stop.sh"))
            .env("BYOK_LOCALSTACK_STATE", self.state.path())
            .output();
    }
}

pub fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what} failed:\n{}", stderr(&o));
    o
}

/// prepare with the bastion; returns (params file, key ARN, fingerprint).
pub fn prepare(ls: &LocalStack, dir: &Path, spec: &str, alg: &str) -> (PathBuf, String, String) {
    let out_dir = dir.join(format!("params-{}", spec.to_lowercase()));
    let o = ok(
        run(ls.bastion().args([
            "prepare",
            "--create",
            spec,
            "--wrapping-algorithm",
            alg,
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--json",
        ])),
        "prepare",
    );
    assert!(
        stderr(&o).contains("KMS endpoint: http://127.0.0.1:"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &v[0];
    (
        PathBuf::from(p["params_file"].as_str().unwrap()),
        p["key_arn"].as_str().unwrap().to_string(),
        p["wrapping_key_sha256"].as_str().unwrap().to_string(),
    )
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

/// moto's server (DynamoDB, RDS, …) for this test binary, stopped when dropped.
pub struct Moto {
    state: tempfile::TempDir,
    /// What start.sh exported (endpoints, BYOK_MOTO_PYTHON).
    pub env: Vec<(String, String)>,
}

impl Moto {
    /// Start moto's server on a loopback port (stopped when dropped).
    pub fn start() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let state = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(root.join("scripts/moto/start.sh"))
            .env("BYOK_MOTO_STATE", state.path())
            .output()
            .expect("moto start.sh runs");
        assert!(
            out.status.success(),
            "moto did not start:\n{}",
            stderr(&out)
        );
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches(['\'', '"']).to_string()))
            .collect();
        Moto { state, env }
    }

    /// A variable start.sh exported.
    pub fn var(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("moto's start.sh exported no {name}"))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let _ = Command::new("bash")
            .arg(root.join("scripts/moto/stop.sh"))
            .env("BYOK_MOTO_STATE", self.state.path())
            .output();
    }
}

/// scripts/latency-proxy.py on loopback in front of `endpoint` (LocalStack or
/// moto), counting requests per operation and logging each one; killed
/// when dropped.
pub struct Proxy {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    counts: PathBuf,
    log: PathBuf,
}

impl Proxy {
    /// Start it with `args` (`--delay-ms`, `--fault …`); counts and the
    /// request log go to files in `dir` (the log is shared by every proxy
    /// of `dir`, in the order requests arrive).
    pub fn start(endpoint: &str, dir: &Path, args: &[&str]) -> Proxy {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = endpoint
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let counts = dir.join(format!("proxy-counts-{n}.json"));
        let log = dir.join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg(root.join("scripts/latency-proxy.py"))
            .args(["--target-port", &target, "--counts"])
            .arg(&counts)
            .arg("--log")
            .arg(&log)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("proxy said {line:?}"));
        Proxy {
            child,
            port,
            counts,
            log,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `section` (requests, forwarded, faults) → operation → count.
    pub fn count(&self, section: &str, op: &str) -> u64 {
        self.counts()[section][op].as_u64().unwrap_or(0)
    }

    /// The whole counts file.
    pub fn counts(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&self.counts).unwrap()).unwrap()
    }

    /// Every request logged in this proxy's directory so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
