//! `ceremony run`: carry out a checked ceremony on the HSM, writing one bundle
//! directory per key and target and appending to the transcript as it goes,
//! so that an interrupted run resumes where it stopped.
//!
//! Layout: `OUT/transcript.jsonl`, `OUT/LABEL/TARGET/{EncryptedKeyMaterial.bin,
//! ImportToken.bin, ImportParameters.json, manifest.json}`, and later
//! `OUT/attestations/`. On resume, the transcript is verified, keys recorded
//! as generated are found again by label and CKA_ID (never generated twice),
//! recorded wraps are skipped, a bundle directory the transcript does not
//! record (a crash between writing it and recording it) is discarded and
//! redone, and parameters are checked for expiry again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::file::{CheckedCeremony, Source};
use super::transcript::{self, TranscriptWriter};
use crate::airgap::confirm;
use crate::airgap::wrap::{bundle_files, obtain_key, wrap_for_target, Wrapped};
use crate::airgap::Error;
use crate::bundle::manifest;
use crate::bundle::AtomicDir;
use crate::hsm::keygen::{self, KeyPolicy};
use crate::hsm::mechanisms::Mechanisms;
use crate::hsm::pin::PinSource;
use crate::hsm::selftest::{self, SelfTestPass};
use crate::hsm::{Hsm, HsmError, ModuleSpec, TokenSelector};
use crate::kms::{ImportParameters, KeySpec, WrappingAlgorithm};

/// Options of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// User PIN source.
    pub pin: PinSource,
    /// Human confirmations were skipped (recorded in the transcript).
    pub non_interactive: bool,
    /// Testing: stop with an error after this many wraps in this run.
    pub fail_after_wraps: Option<usize>,
}

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunSummary {
    /// Whether an earlier run's transcript was continued.
    pub resumed: bool,
    /// Keys generated in this run.
    pub generated: Vec<String>,
    /// `LABEL/TARGET` wrapped in this run.
    pub wrapped: Vec<String>,
    /// `LABEL/TARGET` already done by an earlier run.
    pub skipped: Vec<String>,
    /// The transcript digest at the end.
    pub transcript_sha256: String,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| {
        Error::Output(crate::bundle::OutputError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn write_bundle(
    dir: &Path,
    w: &Wrapped,
    params: &ImportParameters,
    params_bytes: &[u8],
) -> Result<Vec<(String, String)>, Error> {
    let files = bundle_files(w, params, params_bytes);
    let staged = AtomicDir::create(dir)?;
    for (name, bytes) in &files {
        staged.write(name, bytes)?;
    }
    staged.commit()?;
    Ok(files
        .iter()
        .map(|(n, b)| (n.to_string(), hex::encode(Sha256::digest(b))))
        .collect())
}

/// Run `c` into `out`; `progress` gets a line per step, `confirm_start` asks a
/// person to confirm the plan (it is not called with `non_interactive`).
pub fn run(
    c: &CheckedCeremony,
    out: &Path,
    opts: &RunOptions,
    confirm_start: &mut dyn FnMut(&str) -> bool,
    progress: &mut dyn FnMut(&str),
) -> Result<RunSummary, Error> {
    let f = &c.file;
    let tpath = out.join(transcript::FILE_NAME);
    let mut summary = RunSummary::default();
    let (mut t, done_keys, done_wraps) = if tpath.exists() {
        let (w, verified) =
            TranscriptWriter::resume(&tpath).map_err(crate::ceremony::VerifyError::from)?;
        let first = &verified.entries[0].data;
        if first["ceremony_id"] != f.ceremony_id || first["ceremony_file_sha256"] != c.file_sha256 {
            return Err(Error::Output(crate::bundle::OutputError::Exists(
                out.to_path_buf(),
            )));
        }
        if verified
            .entries
            .iter()
            .any(|e| e.step == "ceremony-complete")
        {
            progress("this ceremony is already complete; nothing to do");
            summary.resumed = true;
            summary.transcript_sha256 = verified.digest;
            return Ok(summary);
        }
        let mut keys = BTreeMap::new();
        let mut wraps = BTreeSet::new();
        for e in &verified.entries {
            match e.step.as_str() {
                "key-generated" | "key-found" => {
                    keys.insert(
                        e.data["label"].as_str().unwrap_or_default().to_string(),
                        e.data["id_hex"].as_str().unwrap_or_default().to_string(),
                    );
                }
                "wrapped" => {
                    wraps.insert(format!(
                        "{}/{}",
                        e.data["label"].as_str().unwrap_or_default(),
                        e.data["target"].as_str().unwrap_or_default()
                    ));
                }
                _ => {}
            }
        }
        summary.resumed = true;
        progress(&format!(
            "resuming: transcript verified ({} entries), {} keys and {} wraps already done",
            verified.entries.len(),
            keys.len(),
            wraps.len()
        ));
        (w, keys, wraps)
    } else {
        crate::bundle::output::check_target(out)?;
        let plan = format!(
            "ceremony {} ({} keys, {} wraps) on token {:?}",
            f.ceremony_id,
            f.keys.len(),
            c.targets.iter().map(Vec::len).sum::<usize>(),
            f.hsm.token_label
        );
        if !opts.non_interactive && !confirm_start(&plan) {
            return Err(Error::NotConfirmed);
        }
        std::fs::create_dir(out).map_err(io(out))?;
        let w = TranscriptWriter::create(
            &tpath,
            "ceremony-start",
            json!({
                "ceremony_id": f.ceremony_id,
                "purpose": f.purpose,
                "ceremony_file_sha256": c.file_sha256,
                "policy_sha256": c.policy_sha256,
                "plan": f.keys.iter().map(|k| json!({
                    "label": k.label, "key_spec": k.key_spec, "source": k.source,
                    "targets": k.targets.iter().map(|t| json!({"name": t.name, "wrapping_algorithm": t.wrapping_algorithm, "wrapping_key_sha256": t.wrapping_key_sha256})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "confirmations": if opts.non_interactive { "skipped (--non-interactive)" } else { "typed" },
            }),
        )
        .map_err(io(&tpath))?;
        (w, BTreeMap::new(), BTreeSet::new())
    };

    let hsm = Hsm::open(
        &ModuleSpec {
            path: f.hsm.module.clone(),
            init_string: f.hsm.module_init_string.clone(),
        },
        &TokenSelector::Label(f.hsm.token_label.clone()),
    )?;
    let pin = opts
        .pin
        .read(&format!("token {:?}", hsm.facts.label))
        .map_err(HsmError::from)?;
    let session = hsm.login(&pin)?;
    drop(pin);
    t.append(
        "hsm-session",
        json!({ "token": hsm.facts, "resumed": summary.resumed }),
    )
    .map_err(io(&tpath))?;

    // Every label check before the first key is generated.
    for k in &f.keys {
        match (k.source, done_keys.contains_key(&k.label)) {
            (Source::Generate, false) => keygen::ensure_label_free(&session, &k.label)?,
            (Source::Existing, false) => {
                keygen::find_existing(&session, k.key_spec, &k.label)?;
            }
            (_, true) => {}
        }
    }
    let mechanisms = Mechanisms::probe(&hsm)?;
    let mut passes: BTreeMap<(String, String, usize), SelfTestPass> = BTreeMap::new();
    let mut wraps_this_run = 0usize;
    for (k, targets) in f.keys.iter().zip(&c.targets) {
        let key = match done_keys.get(&k.label) {
            Some(id) => {
                let found = keygen::find_existing(&session, k.key_spec, &k.label)?;
                if &hex::encode(&found.id) != id {
                    return Err(HsmError::KeyUnsuitable {
                        label: k.label.clone(),
                        reason: format!("its CKA_ID is {}, but the transcript recorded {id}: this is not the key this ceremony generated", hex::encode(&found.id)),
                    }
                    .into());
                }
                found
            }
            None => {
                // Self-test first, so a token that cannot do it leaves no key behind.
                for ct in targets {
                    prove_cached(
                        &session,
                        &mechanisms,
                        &mut passes,
                        k.key_spec,
                        ct.target.wrapping_algorithm,
                        ct.params.wrapping_key_bits,
                    )?;
                }
                let key = obtain_key(
                    &session,
                    k.key_spec,
                    &k.label,
                    k.source == Source::Existing,
                    KeyPolicy::default(),
                )?;
                let protection = keygen::protection(&session, key.handle)?;
                t.append(
                    if key.generated { "key-generated" } else { "key-found" },
                    json!({ "label": key.label, "id_hex": hex::encode(&key.id), "key_spec": k.key_spec, "protection": protection }),
                )
                .map_err(io(&tpath))?;
                if key.generated {
                    summary.generated.push(key.label.clone());
                }
                progress(&format!(
                    "{} {} key {:?}",
                    if key.generated { "generated" } else { "found" },
                    k.key_spec,
                    k.label
                ));
                key
            }
        };
        for ct in targets {
            let name = format!("{}/{}", k.label, ct.target.name);
            if done_wraps.contains(&name) {
                summary.skipped.push(name);
                continue;
            }
            let dir = out.join(&k.label).join(&ct.target.name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
                t.append("discarded-unrecorded-output", json!({ "path": name, "reason": "written by an interrupted run but never recorded" })).map_err(io(&tpath))?;
            }
            // Parameters may have expired since the plan was checked (resume).
            let params =
                ImportParameters::parse(&ct.params_bytes, time::OffsetDateTime::now_utc())?;
            let confirmed = confirm::with_expected(&params, &ct.target.wrapping_key_sha256)?;
            let pass = prove_cached(
                &session,
                &mechanisms,
                &mut passes,
                k.key_spec,
                ct.target.wrapping_algorithm,
                params.wrapping_key_bits,
            )?;
            let wrapped = wrap_for_target(
                &session,
                &key,
                &params,
                ct.target.wrapping_algorithm,
                &confirmed,
                &pass,
            )?;
            std::fs::create_dir_all(out.join(&k.label)).map_err(io(out))?;
            let files = write_bundle(&dir, &wrapped, &params, &ct.params_bytes)?;
            let m = &wrapped.manifest;
            t.append(
                "wrapped",
                json!({
                    "label": k.label,
                    "target": ct.target.name,
                    "key_id": m.key_id,
                    "wrapping_algorithm": m.wrapping_algorithm,
                    "wrapping_key_sha256": m.wrapping_key_sha256,
                    "import_parameters_sha256": m.import_parameters_sha256,
                    "import_token_sha256": m.import_token_sha256,
                    "mechanism": m.wrap_method,
                    "self_test": m.self_test,
                    "kcv": m.kcv,
                    "hmac_check": m.hmac_check,
                    "public_key": m.public_key,
                    "outputs": files.iter().map(|(n, h)| json!({ "path": format!("{name}/{n}"), "sha256": h })).collect::<Vec<_>>(),
                }),
            )
            .map_err(io(&tpath))?;
            progress(&format!("wrapped {name} for {}", m.key_id));
            summary.wrapped.push(name);
            wraps_this_run += 1;
            if opts.fail_after_wraps == Some(wraps_this_run) {
                return Err(Error::Output(crate::bundle::OutputError::Io {
                    path: out.to_path_buf(),
                    source: std::io::Error::other(
                        "injected failure (--fail-after-wraps, for tests)",
                    ),
                }));
            }
        }
    }
    // The media summary: what is on it and each file's SHA-256, recorded (and
    // so signed) with the last entry. An unrecorded one is from an interrupted run.
    let summary_path = out.join(SUMMARY);
    if summary_path.exists() {
        std::fs::remove_file(&summary_path).map_err(io(&summary_path))?;
    }
    let text = media_summary(c, out)?;
    std::fs::write(&summary_path, &text).map_err(io(&summary_path))?;
    let digest = t
        .append(
            "ceremony-complete",
            json!({
                "keys": f.keys.len(),
                "wraps": c.targets.iter().map(Vec::len).sum::<usize>(),
                "outputs": [{ "path": SUMMARY, "sha256": hex::encode(Sha256::digest(text.as_bytes())) }],
            }),
        )
        .map_err(io(&tpath))?;
    summary.transcript_sha256 = digest;
    Ok(summary)
}

/// File name of the media summary in a ceremony directory.
pub const SUMMARY: &str = "SUMMARY.md";

/// What is on the media: every bundle with its KMS key and check value, and
/// every file with its size and SHA-256.
fn media_summary(c: &CheckedCeremony, out: &Path) -> Result<String, Error> {
    let f = &c.file;
    let mut s = format!(
        "# {}\n\n{}\n\nBundles (import each with `byok-bastion import DIR --target LABEL/TARGET`):\n\n",
        f.ceremony_id, f.purpose
    );
    for k in &f.keys {
        for t in &k.targets {
            let dir = out.join(&k.label).join(&t.name);
            let bytes = std::fs::read(dir.join(manifest::MANIFEST)).map_err(io(&dir))?;
            let m: manifest::Manifest =
                serde_json::from_slice(&bytes).map_err(|e| io(&dir)(std::io::Error::other(e)))?;
            let check = m
                .kcv
                .map(|v| format!("KCV {v}"))
                .or(m
                    .hmac_check
                    .map(|h| format!("{} {}", h.mac_algorithm, h.mac_hex)))
                .or(m.public_key.map(|p| format!("public key (base64 DER) {p}")))
                .unwrap_or_default();
            s += &format!(
                "* `{}/{}`: {} for `{}` ({}); {}\n",
                k.label, t.name, m.key_spec, m.key_id, m.wrapping_algorithm, check
            );
        }
    }
    s += "\nFiles:\n\n| file | bytes | SHA-256 |\n|---|---|---|\n";
    for o in crate::ceremony::attest::list_outputs(out)? {
        let len = std::fs::metadata(out.join(&o.path))
            .map(|m| m.len())
            .unwrap_or(0);
        s += &format!("| {} | {} | {} |\n", o.path, len, o.sha256);
    }
    s += "\nThe transcript (`transcript.jsonl`) and the custodians' attestations (`attestations/`) travel with these files; verify with `byok-airgap ceremony verify DIR --policy POLICY`.\n";
    Ok(s)
}

fn prove_cached(
    session: &crate::hsm::UserSession,
    mechanisms: &Mechanisms,
    cache: &mut BTreeMap<(String, String, usize), SelfTestPass>,
    spec: KeySpec,
    alg: WrappingAlgorithm,
    bits: usize,
) -> Result<SelfTestPass, Error> {
    let k = (spec.as_str().to_string(), alg.as_str().to_string(), bits);
    if let Some(p) = cache.get(&k) {
        return Ok(p.clone());
    }
    let p = selftest::prove(session, mechanisms, spec, alg, bits)?;
    cache.insert(k, p.clone());
    Ok(p)
}
