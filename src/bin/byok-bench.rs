//! `byok-bench`: how `ceremony run` compares with the HSM's own floor.
//!
//! For each N in `--keys` (default 10,100,200,1000), `--rounds` times (default
//! 3; each round measures every N in turn; every round printed, then the
//! median round by ratio of each N), on a fresh
//! SoftHSM2 token each round: a floor loop that makes only the unavoidable
//! PKCS#11 calls per key through `cryptoki` (generate the token key, import the wrapping
//! public key, wrap it with RSA-OAEP; run before and after the ceremony and
//! averaged, and its keys destroyed each time), then `ceremony run` of N keys (AES and
//! HMAC alternately, one RSAES_OAEP_SHA_1 target each) through the library,
//! with the split of where its time goes ([`byok_ceremony::profile`]). Each
//! part runs in a child process of this one (a PKCS#11 module is initialized
//! once per process). For the largest N, the result is signed by one
//! custodian and `byok-airgap ceremony verify` (the sibling binary) is timed.
//!
//! Run it through `scripts/bench-ceremony.sh` (release build). Not a test:
//! nothing here asserts speed; it prints what it measured.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use base64::Engine as _;
use byok_ceremony::airgap::{confirm, module};
use byok_ceremony::ceremony::{file, run};
use byok_ceremony::hsm::pin::PinSource;
use byok_ceremony::profile;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

const PIN: &str = "bench-user-pin";
const SO_PIN: &str = "bench-so-pin";
const TOKEN: &str = "bench";
/// Distinct KMS wrapping keys, shared round-robin by the targets (each
/// target still has its own import token, as KMS gives).
const WRAPPING_KEYS: usize = 4;

struct Args {
    keys: Vec<usize>,
    /// Rounds per N (floor, ceremony, floor on a fresh token each time); the
    /// summary row is the median round by ratio.
    rounds: usize,
    module: PathBuf,
    work: PathBuf,
    keep: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: byok-bench [--keys 10,100,200,1000] [--rounds 3] [--module PATH] [--work DIR] [--keep]\n\
         (internal: byok-bench floor|ceremony N DIR MODULE)"
    );
    std::process::exit(2)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("floor") => child(&argv, floor),
        Some("ceremony") => child(&argv, ceremony),
        _ => parent(parse(&argv)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("byok-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn parse(argv: &[String]) -> Args {
    let mut a = Args {
        keys: vec![10, 100, 200, 1000],
        rounds: 3,
        module: PathBuf::from(
            std::env::var_os("BYOK_SOFTHSM_MODULE")
                .unwrap_or_else(|| "/usr/lib/softhsm/libsofthsm2.so".into()),
        ),
        work: std::env::temp_dir().join(format!("byok-bench.{}", std::process::id())),
        keep: false,
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--keys" => {
                a.keys = value()
                    .split(',')
                    .map(|n| n.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--rounds" => a.rounds = value().parse().unwrap_or_else(|_| usage()),
            "--module" => a.module = value().into(),
            "--work" => a.work = value().into(),
            "--keep" => a.keep = true,
            _ => usage(),
        }
    }
    if a.keys.is_empty() || a.keys.contains(&0) || a.rounds == 0 {
        usage()
    }
    a
}

fn child(argv: &[String], f: fn(usize, &Path, &Path) -> Res<()>) -> Res<()> {
    let [_, n, dir, module] = argv else { usage() };
    f(n.parse()?, Path::new(dir), Path::new(module))
}

fn sh(cmd: &mut Command) -> Res<String> {
    let o = cmd.output()?;
    if !o.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A fresh SoftHSM2 token in `dir`; returns its configuration file.
fn new_token(dir: &Path, label: &str) -> Res<PathBuf> {
    std::fs::create_dir_all(dir.join("tokens"))?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )?;
    sh(Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", label])
        .args(["--so-pin", SO_PIN, "--pin", PIN]))?;
    Ok(conf)
}

fn sibling(name: &str) -> Res<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(name))
}

/// One line of results a child prints, read back by the parent.
#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
struct Measured {
    total_s: f64,
    /// The ceremony's: when each key's `wrapped` line came, in ms since the
    /// start (they come a batch at a time). Empty for the floor.
    wrapped_at_ms: Vec<f64>,
    phases: Vec<(String, f64, u64)>,
}

fn parent(a: Args) -> Res<()> {
    std::fs::create_dir_all(&a.work)?;
    let me = std::env::current_exe()?;
    let softhsm = sh(Command::new("softhsm2-util").arg("--version"))
        .unwrap_or_else(|_| "?".into())
        .trim()
        .to_string();
    println!(
        "byok-bench {}: SoftHSM2 {softhsm}, module {}, {} CPUs",
        byok_ceremony::VERSION,
        a.module.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("keys | round | floor ms/key (before, after) | run ms/key | ratio | run: first batch recorded after (ms) | run: ms/key after the first batch");
    println!("---|---|---|---|---|---|---");
    let card = card(&a.work.join("card"))?;
    let mut splits = Vec::new();
    let mut flat = Vec::new();
    let largest = a.keys.iter().copied().max().unwrap_or(0);
    // Rounds outermost: each round measures every N in turn, so a drift of
    // the machine over the run (the floor moves by tens of per cent here)
    // touches every N alike, and the N compare.
    let mut rounds: Vec<Vec<(Row, Measured)>> = a.keys.iter().map(|_| Vec::new()).collect();
    for round in 1..=a.rounds {
        for (&n, of_n) in a.keys.iter().zip(&mut rounds) {
            let dir = a.work.join(format!("n{n}-r{round}"));
            let conf = new_token(&dir.join("hsm"), TOKEN)?;
            std::fs::write(dir.join("policy.json"), &card.policy)?;
            let run_child = |mode: &str| -> Res<Measured> {
                // Each measured part starts with nothing dirty in the page
                // cache or the journal: the writeback of the part before it
                // (a token of 1000 keys destroyed, a round's files removed)
                // is not charged to it.
                sh(&mut Command::new("sync"))?;
                let out = sh(Command::new(&me)
                    .args([mode, &n.to_string()])
                    .arg(&dir)
                    .arg(&a.module)
                    .env("SOFTHSM2_CONF", &conf))?;
                Ok(serde_json::from_str(out.trim())?)
            };
            // The floor before and after the run, averaged: the machine's load
            // drifts, and both halves of the ratio should see the same.
            let before = run_child("floor")?;
            let cer = run_child("ceremony")?;
            let after = run_child("floor")?;
            let row = Row::of(n, &before, &after, &cer);
            row.print(n, &round.to_string());
            if n == largest && round == a.rounds {
                verify(&dir, &card)?;
            }
            if !a.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            of_n.push((row, cer));
        }
    }
    for (&n, mut of_n) in a.keys.iter().zip(rounds) {
        let run = median(of_n.iter().map(|r| r.0.run));
        let steady = median(of_n.iter().filter_map(|r| r.0.steady));
        flat.push((n, run, steady));
        // The median round by ratio stands for N; every round is printed above.
        of_n.sort_by(|x, y| x.0.ratio().total_cmp(&y.0.ratio()));
        let (row, cer) = of_n.swap_remove(of_n.len() / 2);
        if a.rounds > 1 {
            row.print(n, "median");
        }
        splits.push((n, cer));
    }
    print_flat(&flat);
    print_split(&splits);
    if a.keep {
        println!("kept {}", a.work.display());
    } else {
        let _ = std::fs::remove_dir_all(&a.work);
    }
    Ok(())
}

/// One row of the results table (ms per key).
struct Row {
    floor: f64,
    floor_before: f64,
    floor_after: f64,
    run: f64,
    /// When the first batch's `wrapped` lines came (start-up, and the HSM's
    /// work on the first two batches: the first is recorded once the second
    /// is wrapped).
    first_batch_ms: f64,
    /// The run's time per key from the first batch's `wrapped` lines to the
    /// last, over the keys the HSM had not done by then: what one more key
    /// costs once the run is going. `None` with fewer than three batches.
    steady: Option<f64>,
}

/// The median of `v` (`NaN` if empty).
fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// From when each key's `wrapped` line came (in batches: lines less than
/// 1 ms apart are one batch; a key takes the HSM several ms), when the first
/// batch's came and the time per key after that. A batch is recorded once
/// the next one is wrapped, so when the first batch's lines come the HSM has
/// done two batches; the keys after those are the rest of the run.
fn steady_state(wrapped_at_ms: &[f64]) -> (f64, Option<f64>) {
    let mut bursts: Vec<(f64, usize)> = Vec::new();
    for (i, &t) in wrapped_at_ms.iter().enumerate() {
        match bursts.last_mut() {
            Some((end, size)) if i > 0 && t - wrapped_at_ms[i - 1] < 1.0 => {
                *end = t;
                *size += 1;
            }
            _ => bursts.push((t, 1)),
        }
    }
    let Some(&(first_end, first_size)) = bursts.first() else {
        return (f64::NAN, None);
    };
    let done_by_then = first_size + bursts.get(1).map_or(0, |b| b.1);
    let after = wrapped_at_ms.len().saturating_sub(done_by_then);
    let last = wrapped_at_ms[wrapped_at_ms.len() - 1];
    let steady = (after > 0).then(|| (last - first_end) / after as f64);
    (first_end, steady)
}

impl Row {
    /// The row of one round; the floor's own split goes to stderr.
    fn of(n: usize, before: &Measured, after: &Measured, cer: &Measured) -> Row {
        let floor = (before.total_s + after.total_s) * 1e3 / 2.0 / n as f64;
        let run = cer.total_s * 1e3 / n as f64;
        let (first_batch_ms, steady) = steady_state(&cer.wrapped_at_ms);
        let split = |m: &Measured| {
            m.phases
                .iter()
                .map(|(p, d, _)| format!("{p} {:.2}", d * 1e3 / n as f64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        eprintln!(
            "N={n} floor split ms/key (before; after): {}; {}",
            split(before),
            split(after)
        );
        Row {
            floor,
            floor_before: before.total_s * 1e3 / n as f64,
            floor_after: after.total_s * 1e3 / n as f64,
            run,
            first_batch_ms,
            steady,
        }
    }

    /// The tool's time per key over the floor's.
    fn ratio(&self) -> f64 {
        self.run / self.floor
    }

    fn print(&self, n: usize, round: &str) {
        println!(
            "{n} | {round} | {:.2} ({:.2}, {:.2}) | {:.2} | {:.2} | {:.0} | {}",
            self.floor,
            self.floor_before,
            self.floor_after,
            self.run,
            self.ratio(),
            self.first_batch_ms,
            self.steady.map_or("-".into(), |s| format!("{s:.2}"))
        );
    }
}

/// Whether the tool's cost per key stays flat as N grows: the median over
/// rounds of its ms/key, whole run and after the first batch, and each N's
/// against the smallest N of at least 100 keys.
fn print_flat(flat: &[(usize, f64, f64)]) {
    println!("\nflat? `ceremony run` ms/key, median of the rounds (the whole run; after the first batch):");
    println!("keys | run ms/key | vs base | after the first batch ms/key | vs base");
    println!("---|---|---|---|---");
    let base = flat.iter().find(|(n, _, _)| *n >= 100).or(flat.first());
    let vs = |x: f64, b: f64| {
        if x.is_finite() && b.is_finite() && b > 0.0 {
            format!("{:+.1} %", (x / b - 1.0) * 100.0)
        } else {
            "-".into()
        }
    };
    for (n, run, steady) in flat {
        let (b_run, b_steady) = base.map_or((f64::NAN, f64::NAN), |b| (b.1, b.2));
        let shown = if steady.is_finite() {
            format!("{steady:.2}")
        } else {
            "-".into()
        };
        println!(
            "{n} | {run:.2} | {} | {shown} | {}",
            vs(*run, b_run),
            vs(*steady, b_steady)
        );
    }
}

/// Where `ceremony run` spends its time, per phase and N.
fn print_split(splits: &[(usize, Measured)]) {
    println!("\nwhere `ceremony run` spends its time (ms per key; phases nest: fsyncs are inside bundle writes and transcript appends):");
    let header: String = splits.iter().map(|(n, _)| format!(" | N={n}")).collect();
    println!("phase{header}");
    println!("---{}", "|---".repeat(splits.len()));
    let names: Vec<String> = splits
        .first()
        .map(|(_, m)| m.phases.iter().map(|p| p.0.clone()).collect())
        .unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        let cells: String = splits
            .iter()
            .map(|(n, m)| {
                format!(
                    " | {:.2} ({}×)",
                    m.phases[i].1 * 1e3 / *n as f64,
                    m.phases[i].2
                )
            })
            .collect();
        println!("{name}{cells}");
    }
    let totals: String = splits
        .iter()
        .map(|(n, m)| format!(" | {:.2}", m.total_s * 1e3 / *n as f64))
        .collect();
    println!("total{totals}");
}

/// A custodian card (a second token) and a 1-of-1 policy naming it.
struct Card {
    conf: PathBuf,
    policy: String,
}

fn card(dir: &Path) -> Res<Card> {
    let conf = new_token(dir, "card")?;
    let init: serde_json::Value =
        serde_json::from_str(&sh(Command::new(sibling("byok-airgap")?)
            .env("SOFTHSM2_CONF", &conf)
            .env("BYOK_BENCH_PIN", PIN)
            .env_remove("BYOK_PKCS11_MODULE")
            .args([
                "custodian",
                "init",
                "--token-label",
                "card",
                "--pin-env",
                "BYOK_BENCH_PIN",
            ])
            .args(["--name", "alice", "--key-label", "sig", "--json"]))?)?;
    let policy = serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1,
                                    "custodians": [init["entry"]]})
    .to_string();
    Ok(Card { conf, policy })
}

/// Sign the ceremony in `dir/out` with the card and time `ceremony verify`.
fn verify(dir: &Path, c: &Card) -> Res<()> {
    let airgap = sibling("byok-airgap")?;
    let policy = dir.join("policy.json");
    let card = |cmd: &mut Command| -> Res<String> {
        sh(cmd
            .env("SOFTHSM2_CONF", &c.conf)
            .env("BYOK_BENCH_PIN", PIN)
            .env_remove("BYOK_PKCS11_MODULE"))
    };
    let out = dir.join("out");
    card(
        Command::new(&airgap)
            .arg("ceremony")
            .arg("sign")
            .arg(&out)
            .args([
                "--custodian",
                "alice",
                "--token-label",
                "card",
                "--pin-env",
                "BYOK_BENCH_PIN",
                "--key-label",
                "sig",
                "--yes",
            ]),
    )?;
    let start = Instant::now();
    let said = sh(Command::new(&airgap)
        .args(["ceremony", "verify"])
        .arg(&out)
        .arg("--policy")
        .arg(&policy))?;
    let took = start.elapsed();
    let first = said.lines().next().unwrap_or("");
    println!(
        "`byok-airgap ceremony verify` of that result ({first}): {:.3} s",
        took.as_secs_f64()
    );
    Ok(())
}

fn spec_of(i: usize) -> (&'static str, KeyType, u64) {
    if i.is_multiple_of(2) {
        ("SYMMETRIC_DEFAULT", KeyType::AES, 32)
    } else {
        ("HMAC_256", KeyType::GENERIC_SECRET, 32)
    }
}

fn wrapping_keys() -> Res<Vec<rsa::RsaPrivateKey>> {
    (0..WRAPPING_KEYS)
        .map(|_| Ok(rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?))
        .collect()
}

/// The floor: per key, only the PKCS#11 calls no tool can avoid.
fn floor(n: usize, _dir: &Path, module: &Path) -> Res<()> {
    let keys = wrapping_keys()?;
    let ctx = Pkcs11::new(module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = ctx
        .get_slots_with_token()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|t| t.label().trim() == TOKEN)
        })
        .ok_or("no bench token")?;
    let session = ctx.open_rw_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::new(PIN.into())))?;
    let oaep = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ));
    let mut made = Vec::with_capacity(n);
    let (mut generating, mut wrapping_time) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        let key = floor_key(&session, i)?;
        generating += t0.elapsed();
        let t1 = Instant::now();
        floor_wrap(&session, &oaep, &keys[i % keys.len()], key)?;
        wrapping_time += t1.elapsed();
        made.push(key);
    }
    let total = start.elapsed();
    // Leave the token as the ceremony expects it: empty.
    for k in made {
        session.destroy_object(k)?;
    }
    drop(session);
    ctx.finalize()?;
    let phases = vec![
        ("generate".to_string(), generating.as_secs_f64(), n as u64),
        (
            "import+wrap".to_string(),
            wrapping_time.as_secs_f64(),
            n as u64,
        ),
    ];
    emit(total, Vec::new(), phases)
}

/// Generate the floor's `i`-th persistent key (the ceremony's key types, in turn).
fn floor_key(
    session: &cryptoki::session::Session,
    i: usize,
) -> Res<cryptoki::object::ObjectHandle> {
    let (_, key_type, len) = spec_of(i);
    let mechanism = if key_type == KeyType::AES {
        Mechanism::AesKeyGen
    } else {
        Mechanism::GenericSecretKeyGen
    };
    let id = session.generate_random_vec(16)?;
    Ok(session.generate_key(
        &mechanism,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
            Attribute::ValueLen(len.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Label(format!("floor-{i}").into_bytes()),
            Attribute::Id(id),
            Attribute::Sign(true),
        ],
    )?)
}

/// Import the wrapping public key as a session object, wrap `key` under it
/// with RSA-OAEP, destroy the public key.
fn floor_wrap(
    session: &cryptoki::session::Session,
    oaep: &Mechanism,
    public: &rsa::RsaPrivateKey,
    key: cryptoki::object::ObjectHandle,
) -> Res<()> {
    let wrapping = session.create_object(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(false),
        Attribute::Wrap(true),
        Attribute::Modulus(public.n().to_bytes_be()),
        Attribute::PublicExponent(public.e().to_bytes_be()),
    ])?;
    let blob = session.wrap_key(oaep, wrapping, key)?;
    session.destroy_object(wrapping)?;
    if blob.len() != 256 {
        return Err(format!("floor wrap gave {} bytes", blob.len()).into());
    }
    Ok(())
}

fn emit(total: Duration, wrapped_at_ms: Vec<f64>, phases: Vec<(String, f64, u64)>) -> Res<()> {
    println!(
        "{}",
        serde_json::to_string(&Measured {
            total_s: total.as_secs_f64(),
            wrapped_at_ms,
            phases,
        })?
    );
    Ok(())
}

/// `ceremony run` of `n` keys through the library, as `byok-airgap ceremony
/// run --non-interactive --expect-parameters-digest` does it.
fn ceremony(n: usize, dir: &Path, module_path: &Path) -> Res<()> {
    let keys = wrapping_keys()?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let params = dir.join("params");
    std::fs::create_dir_all(&params)?;
    let valid_to = (time::OffsetDateTime::now_utc() + time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)?;
    let mut plan = Vec::with_capacity(n);
    for i in 0..n {
        let k = &keys[i % keys.len()];
        let der = k.to_public_key().to_public_key_der()?.into_vec();
        let seed = Sha256::digest(format!("token {i}"));
        let token: Vec<u8> = (0..1200usize).map(|j| seed[j % 32] ^ (j as u8)).collect();
        let rel = format!("params/k{i:05}.json");
        std::fs::write(
            dir.join(&rel),
            serde_json::to_vec_pretty(&serde_json::json!({
                "KeyId": format!("arn:aws:kms:eu-west-1:111122223333:key/0b6d3bb4-6b4f-4f3c-9a55-{i:012}"),
                "ImportToken": b64.encode(&token),
                "PublicKey": b64.encode(&der),
                "ParametersValidTo": valid_to,
            }))?,
        )?;
        plan.push(serde_json::json!({
            "label": format!("bench-{i:05}"),
            "key_spec": spec_of(i).0,
            "source": "generate",
            "targets": [{"name": "eu-west-1", "params": rel, "wrapping_algorithm": "RSAES_OAEP_SHA_1",
                         "wrapping_key_sha256": hex::encode(Sha256::digest(&der))}],
        }));
    }
    let cfile = dir.join("ceremony.json");
    std::fs::write(
        &cfile,
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "byok-ceremony/ceremony/v1",
            "ceremony_id": format!("bench-{n}"),
            "purpose": "benchmark",
            "hsm": {"module": module_path, "token_label": TOKEN},
            "policy": "policy.json",
            "keys": plan,
        }))?,
    )?;
    let now = time::OffsetDateTime::now_utc();
    let (_, digest) = file::parameters_digest_of(&cfile, now)?;
    let local = module::resolve(Some(module_path), None)?;
    std::env::set_var("BYOK_BENCH_PIN", PIN);
    profile::reset();
    let start = Instant::now();
    let c = file::check(&cfile, now, time::Duration::minutes(10))?;
    let opts = run::RunOptions {
        pin: PinSource::Env("BYOK_BENCH_PIN".into()),
        module: local,
        non_interactive: true,
        parameters: confirm::parameters_with_expected(&c, &digest.hex())?,
        trusted: None,
    };
    let mut wrapped_at = Vec::with_capacity(n);
    let summary = run::run(&c, &dir.join("out"), &opts, &mut |_| false, &mut |line| {
        if line.starts_with("wrapped ") {
            wrapped_at.push(start.elapsed().as_secs_f64() * 1e3);
        }
    })?;
    let total = start.elapsed();
    if summary.wrapped.len() != n {
        return Err(format!("the run wrapped {} of {n}", summary.wrapped.len()).into());
    }
    let phases = profile::snapshot()
        .into_iter()
        .map(|(p, d, count)| (p.name().to_string(), d.as_secs_f64(), count))
        .collect();
    emit(total, wrapped_at, phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_state_counts_keys_after_the_first_batch() {
        // Four batches: 3 keys at 100 ms, 3 at 130, 3 at 160, 2 at 175.
        let at = [
            100.0, 100.1, 100.2, 130.0, 130.1, 130.2, 160.0, 160.1, 160.2, 175.0, 175.05,
        ];
        let (first, steady) = steady_state(&at);
        assert_eq!(first, 100.2);
        // When the first batch was recorded the second was wrapped: 5 keys
        // of HSM work remained.
        let steady = steady.unwrap();
        assert!((steady - (175.05 - 100.2) / 5.0).abs() < 1e-9, "{steady}");
        // Two batches, or one: no steady state.
        assert_eq!(steady_state(&[5.0, 5.1, 9.0]), (5.1, None));
        assert_eq!(steady_state(&[5.0, 5.1]), (5.1, None));
        assert!(steady_state(&[]).0.is_nan());
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
    }
}
