//! `ceremony run`: carry out a checked ceremony on the HSM, writing one bundle
//! directory per key and target and appending to the transcript as it goes,
//! so that an interrupted run (a crash, a pulled plug, SIGKILL) resumes where
//! it stopped.
//!
//! Layout: `OUT/transcript.jsonl`, `OUT/LABEL/TARGET/{EncryptedKeyMaterial.bin,
//! ImportToken.bin, ImportParameters.json, manifest.json}`, `OUT/SUMMARY.md`,
//! and later `OUT/attestations/`. Labels and target names are path-safe
//! names ([`crate::names`]), so every path is inside `OUT`.
//!
//! Crash consistency:
//! * keys are carried out in batches with one fsync per stage (group commit,
//!   below): every entry is fsynced before anything relies on it (an
//!   intent before its key is generated, a bundle before its `wrapped`
//!   entry), and `OUT`, each label directory and each bundle's directory
//!   entry are fsynced before the `wrapped` entry that records them;
//! * before a key is generated, its intended `CKA_ID` is recorded
//!   (`key-intent`), so a key generated just before a crash is adopted on
//!   resume (after the token confirms it was generated there and never
//!   revealed), never reported as "label taken" and never generated twice;
//! * on resume, a key recorded as generated must still have the check value
//!   (KCV, HMAC check or public key) the transcript recorded;
//! * labels and `CKA_ID`s are checked against one index of the token read
//!   after login and kept up to date as keys are generated
//!   ([`keygen::TokenIndex`]), not a search of the token per key;
//! * a torn last transcript line is cut off after the rest verifies, and the
//!   cut is recorded; a bundle directory or staging directory the transcript
//!   does not record is removed only if it is a real directory holding only
//!   bundle files (never through a symlink, never outside `OUT`).
//!
//! Group commit: a batch of keys is carried out with one journal commit per
//! stage instead of one per entry and file, in an order that keeps resume
//! safe:
//!
//! 1. the intents (`key-intent`) of every key to generate are appended and
//!    fsynced together, before any of them is generated;
//! 2. each key is generated (or found, or adopted) and its `key-generated`
//!    entry appended; these become durable with step 5. If they are lost in a
//!    crash, resume adopts each key by its recorded intent and records it
//!    again (`adopted_after_interruption`), as it does for a crash between a
//!    generation and its entry;
//! 3. every bundle of the batch is wrapped (`Bundles::prepare` does 1 to 3);
//! 4. on a writer thread, while the HSM works on the next batch, all of the
//!    batch's bundles are written (and their label directories created) and
//!    committed together: every file and staging directory made durable,
//!    each renamed into place, the renames made durable
//!    ([`AtomicDir::commit_all`]: one `syncfs` before the renames and one
//!    after, where the kernel reports its errors) (`InFlight`);
//! 5. once the writer is done, the `wrapped` entries are appended and fsynced
//!    together, so only after every bundle they record is durable. A bundle in
//!    place whose entry was lost is discarded and wrapped again on resume.
//!
//! The transcript is only written from the thread that runs the ceremony, so
//! its entries keep their order within each key; entries of the next batch
//! may come before the `wrapped` entries of this one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::attest::OutputFile;
use super::file::{CheckedCeremony, CheckedTarget, KeyPlan, Source};
use super::transcript::{self as ts, Step, TranscriptWriter};
use crate::airgap::confirm::ConfirmedParameters;
use crate::airgap::module::LocalModule;
use crate::airgap::wrap::{bundle_files, wrap_for_target_with, Wrapped};
use crate::airgap::{Error, ForeignReason, SwapReason};
use crate::bundle::manifest;
use crate::bundle::output::{ensure_real_dir, ensure_real_dir_deferred, fsync_dir, write_new_file};
use crate::bundle::{AtomicDir, OutputError};
use crate::fingerprint::Fingerprint;
use crate::hsm::key_checks::{self, KeyChecks};
use crate::hsm::keygen::{self, HsmKey, KeyPolicy, TokenIndex};
use crate::hsm::mechanisms::Mechanisms;
use crate::hsm::pin::PinSource;
use crate::hsm::selftest::{self, SelfTestPass};
use crate::hsm::wrap::{AesWrapPreference, WrappingKey};
use crate::hsm::{Hsm, HsmError, TokenSelector, UserSession};
use crate::kms::{ImportParameters, KeySpec, WrappingAlgorithm};
use crate::names::{KeyLabel, TargetName};
use crate::profile::{self, Phase};
use cryptoki::object::ObjectHandle;

/// Options of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// User PIN source.
    pub pin: PinSource,
    /// The workstation's PKCS#11 module (never from the media).
    pub module: LocalModule,
    /// The ceremony-ID prompt was skipped (recorded in the transcript).
    pub non_interactive: bool,
    /// The parameters digest, confirmed from outside the media.
    pub parameters: ConfirmedParameters,
    /// Trusted wrapping: keys are generated with `CKA_WRAP_WITH_TRUSTED`, and the
    /// security officer (PIN from this source) marks the confirmed KMS
    /// wrapping keys `CKA_TRUSTED` for the session.
    pub trusted: Option<PinSource>,
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

/// File name of the media summary in a ceremony directory.
pub const SUMMARY: &str = "SUMMARY.md";

/// The bundle files, the only names a discarded bundle directory may hold.
const BUNDLE_FILES: [&str; 4] = [
    manifest::ENCRYPTED_KEY_MATERIAL,
    manifest::IMPORT_TOKEN,
    manifest::IMPORT_PARAMETERS,
    manifest::MANIFEST,
];

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| {
        Error::Output(OutputError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A key the transcript records as generated or found.
#[derive(Clone, Debug)]
struct RecordedKey {
    id_hex: String,
    /// Check values recorded with the key, or with its first wrap (older transcripts).
    checks: Option<KeyChecks>,
}

/// What an earlier run of this ceremony recorded.
#[derive(Debug, Default)]
struct Progress {
    resumed: bool,
    keys: BTreeMap<KeyLabel, RecordedKey>,
    intents: BTreeMap<KeyLabel, String>,
    wraps: BTreeSet<(KeyLabel, TargetName)>,
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
    opts.module.check_expected(&f.expected_module())?;
    if opts.parameters.digest() != c.parameters_digest {
        return Err(Error::ParametersNotConfirmed);
    }
    let tpath = out.join(ts::FILE_NAME);
    let mut summary = RunSummary::default();
    let (mut t, done) = match open_transcript(c, out, opts, confirm_start, progress)? {
        Opened::Complete(digest) => {
            progress("this ceremony is already complete; nothing to do");
            summary.resumed = true;
            summary.transcript_sha256 = digest;
            return Ok(summary);
        }
        Opened::Writer(t, done) => (t, done),
    };
    summary.resumed = done.resumed;
    let hsm = open_expected_token(c, opts)?;
    let needed = needed_self_tests(c, &done);
    let (session, trusted) = profile::time(Phase::Session, || {
        let pin = opts
            .pin
            .read(&format!("token {:?}", hsm.facts.label))
            .map_err(HsmError::from)?;
        login(c, opts, &needed, &hsm, &pin)
    })?;
    let trusted = trusted.adopt(&session);
    t.append(Step::HsmSession(ts::HsmSession {
        token: hsm.facts.clone(),
        module: Some(module_record(&opts.module)),
        resumed: done.resumed,
        wrap_with_trusted: Some(opts.trusted.is_some()),
    }))
    .map_err(io(&tpath))?;

    // One search of the token for every label and CKA_ID, kept up to date as
    // keys are generated: a search per key is linear in the objects on the
    // token, which makes a long ceremony quadratic.
    let mut index = profile::time(Phase::Search, || TokenIndex::read(&session))?;
    check_labels(c, &session, &index, &done)?;
    let mechanisms = Mechanisms::probe(&hsm)?;
    // Every self-test before the first key is generated, so a token that
    // cannot do one leaves no key behind; trusted test keys go right after.
    let passes = profile::time(Phase::SelfTest, || {
        SelfTests::prove_all(&needed, &session, &mechanisms, trusted.test_keys)
    })?;
    let policy = KeyPolicy {
        wrap_with_trusted: opts.trusted.is_some(),
    };
    let bundles = Bundles {
        c,
        opts,
        out,
        session: &session,
        passes: &passes,
        kms_keys: &trusted.kms_keys,
        done: &done,
        tpath: &tpath,
    };
    let plan: Vec<PlannedKey> = f
        .keys
        .iter()
        .zip(c.targets.iter().map(Vec::as_slice))
        .collect();
    // Each batch's bundles are written by a thread of their own while the
    // HSM works on the next batch (the writing is disk-bound, the HSM's work
    // too, on another file); the transcript is written here only.
    std::thread::scope(|scope| {
        let mut in_flight: Option<InFlight> = None;
        let mut result = Ok(());
        for batch in batches(&plan) {
            let (prepared, failed) =
                match bundles.prepare(&mut index, policy, batch, &mut t, &mut summary) {
                    Ok(p) => p,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
            if let Some(previous) = in_flight.take() {
                if let Err(e) = previous.record(&mut t, &tpath, &mut summary, progress) {
                    result = Err(e);
                    break;
                }
            }
            in_flight = Some(InFlight::start(scope, prepared));
            if let Some(e) = failed {
                result = Err(e);
                break;
            }
        }
        if let Some(last) = in_flight.take() {
            let recorded = last.record(&mut t, &tpath, &mut summary, progress);
            result = result.and(recorded);
        }
        if result.is_err() {
            // What was recorded before the failure stays recorded (resume
            // would redo it otherwise); the failure is what is reported.
            let _ = t.sync();
        }
        result
    })?;
    summary.transcript_sha256 = profile::time(Phase::Finish, || finish(c, out, &mut t, &tpath))?;
    Ok(summary)
}

/// What writing a key's bundles needs: the ceremony, the session, the
/// self-test passes and trusted keys, and what an earlier run did.
struct Bundles<'r, 's, 'h> {
    c: &'r CheckedCeremony,
    opts: &'r RunOptions,
    out: &'r Path,
    session: &'r UserSession<'h>,
    passes: &'r SelfTests,
    kms_keys: &'r BTreeMap<String, WrappingKey<'s, 'h>>,
    done: &'r Progress,
    tpath: &'r Path,
}

/// A key of the ceremony with its checked targets.
type PlannedKey<'c> = (&'c KeyPlan, &'c [CheckedTarget]);

/// Keys carried out together (group commit, see the module documentation): enough that
/// the fsyncs cost little per key, few enough that a crash redoes little and
/// the custodians see progress every fraction of a second.
const KEYS_PER_BATCH: usize = 32;
/// At most this many bundles are staged at once (each keeps its four files
/// open until the batch commits).
const BUNDLES_PER_BATCH: usize = 64;

/// `plan` cut into batches of at most [`KEYS_PER_BATCH`] keys and (unless a
/// single key has more targets) [`BUNDLES_PER_BATCH`] bundles, in order.
fn batches<'p, 'c>(plan: &'p [PlannedKey<'c>]) -> Vec<&'p [PlannedKey<'c>]> {
    cut(plan, |(_, targets)| targets.len())
}

/// `items` cut into runs of at most [`KEYS_PER_BATCH`] items whose
/// `bundles` add up to at most [`BUNDLES_PER_BATCH`] (an item with more is a
/// run of its own).
fn cut<T>(items: &[T], bundles: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        sum += bundles(item);
        let next = items.get(i + 1).map_or(0, &bundles);
        if i + 1 - start == KEYS_PER_BATCH || sum + next > BUNDLES_PER_BATCH {
            out.push(&items[start..=i]);
            (start, sum) = (i + 1, 0);
        }
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Step 1 of a batch (see the module documentation): how each key of
/// `batch` is obtained; for each key to generate now, a fresh `CKA_ID` whose
/// intent is appended, all of them fsynced once, before any is generated.
fn record_intents<'d>(
    session: &UserSession,
    batch: &[PlannedKey],
    done: &'d Progress,
    t: &mut TranscriptWriter,
    tpath: &Path,
) -> Result<Vec<HowObtained<'d>>, Error> {
    let mut how = Vec::with_capacity(batch.len());
    for (k, _) in batch {
        how.push(
            match (
                done.keys.get(&k.label),
                k.source,
                done.intents.get(&k.label),
            ) {
                (Some(recorded), _, _) => HowObtained::Recorded(recorded),
                (None, Source::Existing, _) => HowObtained::Existing,
                (None, Source::Generate, Some(id_hex)) => HowObtained::Intended(id_hex),
                (None, Source::Generate, None) => {
                    let id = session.random(16)?;
                    t.append_deferred(Step::KeyIntent(ts::KeyIntent {
                        label: k.label.to_string(),
                        id_hex: hex::encode(&id),
                        key_spec: k.key_spec,
                    }))
                    .map_err(io(tpath))?;
                    HowObtained::Fresh(id)
                }
            },
        );
    }
    t.sync().map_err(io(tpath))?;
    Ok(how)
}

/// A bundle's directory and its files, to be written.
type BundleWrite = (PathBuf, Vec<(&'static str, Vec<u8>)>);

/// A batch's bundles, wrapped, not yet written.
#[derive(Default)]
struct Prepared {
    /// Each bundle's directory and files.
    writes: Vec<BundleWrite>,
    /// For each bundle, in the same order: `LABEL/TARGET`, the KMS key, and
    /// the `wrapped` entry to append once it is durable.
    records: Vec<(String, String, Step)>,
}

/// A batch's bundles being written and committed by a writer thread.
struct InFlight<'scope> {
    writer: std::thread::ScopedJoinHandle<'scope, Result<(), OutputError>>,
    records: Vec<(String, String, Step)>,
}

impl<'scope> InFlight<'scope> {
    /// Write and commit `p`'s bundles on a thread of `scope` (step 4).
    fn start<'env>(scope: &'scope std::thread::Scope<'scope, 'env>, p: Prepared) -> Self {
        let writes = p.writes;
        InFlight {
            writer: scope.spawn(move || write_bundles(writes)),
            records: p.records,
        }
    }

    /// Wait for the writer, then append the `wrapped` entries with one fsync
    /// (step 5).
    fn record(
        self,
        t: &mut TranscriptWriter,
        tpath: &Path,
        summary: &mut RunSummary,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), Error> {
        // A panic in the writer is a bug: it goes on as one, as it did when
        // bundles were written on this thread.
        self.writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let mut names = Vec::with_capacity(self.records.len());
        for (name, key_id, record) in self.records {
            t.append_deferred(record).map_err(io(tpath))?;
            names.push((name, key_id));
        }
        t.sync().map_err(io(tpath))?;
        for (name, key_id) in names {
            progress(&format!("wrapped {name} for {key_id}"));
            summary.wrapped.push(name);
        }
        Ok(())
    }
}

/// Stage every bundle of `writes` (creating its label directory, which must
/// be a real directory if it exists), then commit them together with the
/// parents of the label directories created (step 4).
fn write_bundles(writes: Vec<BundleWrite>) -> Result<(), OutputError> {
    profile::time(Phase::BundleWrite, || {
        let mut staged = Vec::with_capacity(writes.len());
        let mut created = Vec::new();
        for (dir, files) in writes {
            if let Some(key_dir) = dir.parent() {
                created.extend(ensure_real_dir_deferred(key_dir)?);
            }
            let mut d = AtomicDir::create(&dir)?;
            for (name, bytes) in &files {
                d.write(name, bytes)?;
            }
            staged.push(d);
        }
        AtomicDir::commit_all(staged, &created)
    })
}

impl Bundles<'_, '_, '_> {
    /// Steps 1 to 3 of a batch: record the intents, obtain the keys, and wrap
    /// each for each of its targets an earlier run did not record. If one
    /// cannot be wrapped, the bundles wrapped before it are returned with the
    /// error (they are still written and recorded).
    fn prepare(
        &self,
        index: &mut TokenIndex,
        policy: KeyPolicy,
        batch: &[PlannedKey],
        t: &mut TranscriptWriter,
        summary: &mut RunSummary,
    ) -> Result<(Prepared, Option<Error>), Error> {
        let session = self.session;
        let how = record_intents(session, batch, self.done, t, self.tpath)?;
        let mut keys = Vec::with_capacity(batch.len());
        for ((k, _), how) in batch.iter().zip(how) {
            let key = obtain(session, index, policy, k, how, t, self.tpath)?;
            if key.generated && !self.done.keys.contains_key(&k.label) {
                summary.generated.push(k.label.to_string());
            }
            keys.push(key);
        }
        let mut p = Prepared::default();
        for ((k, targets), key) in batch.iter().zip(&keys) {
            let key_dir = k.label.join_to(self.out);
            for ct in *targets {
                let name = format!("{}/{}", k.label, ct.target.name);
                if self
                    .done
                    .wraps
                    .contains(&(k.label.clone(), ct.target.name.clone()))
                {
                    summary.skipped.push(name);
                    continue;
                }
                // What an interrupted run left for this bundle is removed
                // before the writer stages it again. A fresh run began on an
                // empty OUT, and a label directory not there yet holds
                // nothing, so there is nothing to look for; the writer
                // creates the label directory.
                if self.done.resumed && key_dir.symlink_metadata().is_ok() {
                    profile::time(Phase::BundleWrite, || {
                        // Refuses a symlink or a file where the label directory is.
                        ensure_real_dir_deferred(&key_dir)?;
                        discard_unrecorded(&key_dir, &ct.target.name, t, self.tpath)
                    })?;
                }
                let wrapped = match profile::time(Phase::Wrap, || {
                    wrap_target(
                        self.c,
                        self.opts,
                        self.session,
                        self.passes,
                        self.kms_keys,
                        k,
                        ct,
                        key,
                    )
                }) {
                    Ok(w) => w,
                    Err(e) => return Ok((p, Some(e))),
                };
                let files = bundle_files(&wrapped, &ct.params, &ct.params_bytes);
                let digests: Vec<(String, String)> = files
                    .iter()
                    .map(|(n, b)| (n.to_string(), hex::encode(Sha256::digest(b))))
                    .collect();
                p.records.push((
                    name,
                    wrapped.manifest.key_id.clone(),
                    wrapped_record(k, ct, &wrapped, &digests),
                ));
                p.writes.push((
                    ct.target.name.join_to(&key_dir),
                    files.into_iter().collect(),
                ));
            }
        }
        Ok((p, None))
    }
}

enum Opened {
    Complete(String),
    Writer(TranscriptWriter, Progress),
}

/// Start a new transcript, or continue the one in `out` (after cutting a
/// torn last line and checking it belongs to this ceremony).
fn open_transcript(
    c: &CheckedCeremony,
    out: &Path,
    opts: &RunOptions,
    confirm_start: &mut dyn FnMut(&str) -> bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Opened, Error> {
    let f = &c.file;
    let tpath = out.join(ts::FILE_NAME);
    // Never append through a symlink planted where the transcript should be.
    if std::fs::symlink_metadata(&tpath).is_ok_and(|m| !m.file_type().is_file()) {
        return Err(Error::Foreign {
            path: tpath,
            why: ForeignReason::NotAPlainFile,
        });
    }
    let torn = if tpath.exists() {
        ts::cut_torn_tail(&tpath).map_err(crate::ceremony::VerifyError::from)?
    } else {
        None
    };
    let resumable = std::fs::symlink_metadata(&tpath).is_ok_and(|m| m.len() > 0);
    if !resumable {
        return start_fresh(c, out, opts, confirm_start)
            .map(|t| Opened::Writer(t, Progress::default()));
    }
    let (mut w, verified) =
        TranscriptWriter::resume(&tpath).map_err(crate::ceremony::VerifyError::from)?;
    let ours = match &verified.entries[0].step {
        Step::CeremonyStart(first) => {
            first.ceremony_id == f.ceremony_id.as_str()
                && first.ceremony_file_sha256 == c.file_sha256
        }
        _ => false,
    };
    if !ours {
        return Err(Error::Output(OutputError::Exists(out.to_path_buf())));
    }
    if verified
        .entries
        .iter()
        .any(|e| matches!(e.step, Step::CeremonyComplete(_)))
    {
        return Ok(Opened::Complete(verified.digest));
    }
    let done = Progress::read(&verified.entries, out)?;
    if let Some(cut) = &torn {
        w.append(Step::TranscriptTruncated(ts::Truncated {
            removed_bytes: cut.bytes as u64,
            removed_sha256: cut.sha256.clone(),
            reason: "the last entry was incomplete: the previous run stopped while writing it"
                .into(),
        }))
        .map_err(io(&tpath))?;
        progress(&format!(
            "cut an incomplete last transcript entry ({} bytes)",
            cut.bytes
        ));
    }
    w.append(Step::Resumed(ts::Resumed {
        confirmations: confirmations(opts),
        module: module_record(&opts.module),
    }))
    .map_err(io(&tpath))?;
    progress(&format!(
        "resuming: transcript verified ({} entries), {} keys and {} wraps already done",
        verified.entries.len(),
        done.keys.len(),
        done.wraps.len()
    ));
    Ok(Opened::Writer(w, done))
}

fn start_fresh(
    c: &CheckedCeremony,
    out: &Path,
    opts: &RunOptions,
    confirm_start: &mut dyn FnMut(&str) -> bool,
) -> Result<TranscriptWriter, Error> {
    let f = &c.file;
    let tpath = out.join(ts::FILE_NAME);
    // An OUT left by a run killed before its first entry holds at most an
    // empty transcript; anything else there is not ours.
    let leftover = std::fs::symlink_metadata(out).is_ok();
    if leftover {
        only_empty_transcript(out)?;
    } else {
        crate::bundle::output::check_target(out)?;
    }
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
    if leftover {
        if tpath.exists() {
            std::fs::remove_file(&tpath).map_err(io(&tpath))?;
        }
    } else {
        ensure_real_dir(out)?;
    }
    let w = TranscriptWriter::create(&tpath, ceremony_start(c, opts)).map_err(io(&tpath))?;
    fsync_dir(out)?;
    Ok(w)
}

/// The first entry of a ceremony's transcript: what it was asked to do.
fn ceremony_start(c: &CheckedCeremony, opts: &RunOptions) -> Step {
    let f = &c.file;
    let plan = f
        .keys
        .iter()
        .map(|k| ts::PlannedKey {
            label: k.label.to_string(),
            key_spec: k.key_spec,
            source: k.source,
            targets: k
                .targets
                .iter()
                .map(|t| ts::PlannedTarget {
                    name: t.name.to_string(),
                    wrapping_algorithm: t.wrapping_algorithm,
                    wrapping_key_sha256: t.wrapping_key_sha256.clone(),
                })
                .collect(),
        })
        .collect();
    Step::CeremonyStart(ts::CeremonyStart {
        ceremony_id: f.ceremony_id.to_string(),
        purpose: f.purpose.clone(),
        ceremony_file_sha256: c.file_sha256.clone(),
        policy_sha256: c.policy_sha256.clone(),
        parameters_digest: Some(c.parameters_digest.hex()),
        module: Some(module_record(&opts.module)),
        plan,
        confirmations: confirmations(opts),
        tool_version: String::new(),
        tool_binary_sha256: String::new(),
    })
}

/// `out` exists: accept it only if it is a real directory holding nothing
/// but an empty transcript (a run killed before its first entry).
fn only_empty_transcript(out: &Path) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(out).map_err(io(out))?;
    if !meta.file_type().is_dir() {
        return Err(OutputError::Exists(out.to_path_buf()).into());
    }
    for e in std::fs::read_dir(out).map_err(io(out))? {
        let e = e.map_err(io(out))?;
        let empty_transcript = e.file_name() == ts::FILE_NAME
            && e.metadata()
                .is_ok_and(|m| m.file_type().is_file() && m.len() == 0);
        if !empty_transcript {
            return Err(OutputError::Exists(out.to_path_buf()).into());
        }
    }
    Ok(())
}

/// What was confirmed before this run, and how (recorded in the transcript).
fn confirmations(opts: &RunOptions) -> ts::Confirmations {
    let ceremony_id = if opts.non_interactive {
        "skipped (--non-interactive)"
    } else {
        "typed"
    };
    ts::Confirmations::Recorded {
        ceremony_id: ceremony_id.into(),
        parameters_digest: ts::DigestConfirmation {
            value: opts.parameters.digest().hex(),
            by: opts.parameters.by(),
        },
    }
}

fn module_record(m: &LocalModule) -> ts::ModuleRecord {
    ts::ModuleRecord {
        path: m.spec.path.clone(),
        origin: m.origin.clone(),
        init_string: m.spec.init_string.is_some(),
    }
}

impl Progress {
    /// Read an earlier run's entries (typed when the transcript verified).
    /// Entries of other steps, and unknown steps, are ignored; a label or
    /// target name that is not path-safe stops the resume.
    fn read(entries: &[ts::Entry], out: &Path) -> Result<Self, Error> {
        let bad = |entry: u64, field: &'static str| Error::Resume {
            path: out.to_path_buf(),
            entry,
            field,
        };
        let label = |seq: u64, l: &str| KeyLabel::new(l).map_err(|_| bad(seq, "label"));
        let mut p = Progress {
            resumed: true,
            ..Default::default()
        };
        for e in entries {
            match &e.step {
                Step::KeyIntent(i) => {
                    p.intents.insert(label(e.seq, &i.label)?, i.id_hex.clone());
                }
                Step::KeyGenerated(k) | Step::KeyFound(k) => {
                    let recorded = RecordedKey {
                        id_hex: k.id_hex.clone(),
                        checks: k.checks.clone(),
                    };
                    p.keys.insert(label(e.seq, &k.label)?, recorded);
                }
                Step::Wrapped(ts::Wrapped::Target(w)) => {
                    let l = label(e.seq, &w.label)?;
                    let target = TargetName::new(&w.target).map_err(|_| bad(e.seq, "target"))?;
                    if let Some(k) = p.keys.get_mut(&l) {
                        if k.checks.is_none() {
                            k.checks = Some(w.checks());
                        }
                    }
                    p.wraps.insert((l, target));
                }
                Step::Wrapped(ts::Wrapped::Single(_)) => return Err(bad(e.seq, "label")),
                _ => {}
            }
        }
        Ok(p)
    }
}

/// Open the ceremony's token on the workstation's module, and check it is
/// the one the ceremony file expects (before login).
fn open_expected_token(c: &CheckedCeremony, opts: &RunOptions) -> Result<Hsm, Error> {
    let hsm = profile::time(Phase::Session, || {
        Hsm::open(
            &opts.module.spec,
            &TokenSelector::Label(c.file.hsm.token_label.clone()),
        )
    })?;
    check_expected_token(c, &hsm)?;
    Ok(hsm)
}

/// The token must report what the ceremony file expects (before login).
fn check_expected_token(c: &CheckedCeremony, hsm: &Hsm) -> Result<(), Error> {
    let Some(want) = &c.file.hsm.token else {
        return Ok(());
    };
    let facts = &hsm.facts;
    for (field, expected, actual) in [
        ("manufacturer", &want.manufacturer, &facts.manufacturer),
        ("model", &want.model, &facts.model),
        ("serial", &want.serial, &facts.serial),
    ] {
        if let Some(e) = expected {
            if e.trim() != actual.trim() {
                return Err(Error::TokenMismatch {
                    field,
                    actual: actual.clone(),
                    expected: e.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Every label check before the first key is generated.
fn check_labels(
    c: &CheckedCeremony,
    session: &UserSession,
    index: &TokenIndex,
    done: &Progress,
) -> Result<(), Error> {
    for k in &c.file.keys {
        if done.keys.contains_key(&k.label) || done.intents.contains_key(&k.label) {
            continue;
        }
        match k.source {
            Source::Generate => index.ensure_label_free(session, k.label.as_str())?,
            Source::Existing => {
                keygen::find_existing_indexed(session, index, k.key_spec, k.label.as_str())?;
            }
        }
    }
    Ok(())
}

/// The trusted objects the security officer created for this session.
#[derive(Default)]
struct Trusted<'s, 'h> {
    /// The confirmed KMS wrapping keys, by wrapping-key SHA-256 (hex).
    kms_keys: BTreeMap<String, WrappingKey<'s, 'h>>,
    /// The self-test's throwaway KMS keys, one per self-test; each is
    /// destroyed as soon as its self-test ends.
    test_keys: BTreeMap<Combination, WrappingKey<'s, 'h>>,
}

/// A key spec × wrapping algorithm × wrapping-key size: what one self-test proves.
type Combination = (KeySpec, WrappingAlgorithm, usize);

/// The self-tests the remaining work needs, each once.
fn needed_self_tests(c: &CheckedCeremony, done: &Progress) -> Vec<Combination> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (k, targets) in c.file.keys.iter().zip(&c.targets) {
        for ct in targets {
            if done
                .wraps
                .contains(&(k.label.clone(), ct.target.name.clone()))
            {
                continue;
            }
            let combo = (
                k.key_spec,
                ct.target.wrapping_algorithm,
                ct.params.wrapping_key_bits,
            );
            if seen.insert(combo) {
                out.push(combo);
            }
        }
    }
    out
}

/// Log in as the user; with trusted wrapping, first as the security officer
/// to mark the confirmed wrapping keys (and the self-test's) trusted.
fn login<'h>(
    c: &CheckedCeremony,
    opts: &RunOptions,
    needed: &[Combination],
    hsm: &'h Hsm,
    pin: &secrecy::SecretString,
) -> Result<(UserSession<'h>, TrustedHandles), Error> {
    let Some(so) = &opts.trusted else {
        return Ok((hsm.login(pin)?, TrustedHandles::default()));
    };
    let so_pin = so
        .read(&format!(
            "the security officer of token {:?}",
            hsm.facts.label
        ))
        .map_err(HsmError::from)?;
    let mut kms: BTreeMap<String, rsa::RsaPublicKey> = BTreeMap::new();
    for ct in c.targets.iter().flatten() {
        kms.entry(hex::encode(ct.params.wrapping_key_sha256()))
            .or_insert_with(|| ct.params.public_key.clone());
    }
    let tests: BTreeMap<Combination, rsa::RsaPublicKey> = needed
        .iter()
        .map(|combo| (*combo, selftest::test_rsa_key(combo.2).to_public_key()))
        .collect();
    let objects: Vec<(&rsa::RsaPublicKey, &str)> = kms
        .values()
        .map(|k| (k, "byok-ceremony KMS wrapping key (trusted)"))
        .chain(
            tests
                .values()
                .map(|k| (k, "byok-ceremony self-test KMS key (trusted, throwaway)")),
        )
        .collect();
    let (session, handles) = hsm.login_trusting(pin, &so_pin, &objects)?;
    let mut h = handles.into_iter();
    let kms = kms
        .into_iter()
        .map(|(fp, key)| (fp, (h.next(), key)))
        .filter_map(|(fp, (handle, key))| handle.map(|handle| (fp, (handle, key))))
        .collect();
    let tests = tests
        .into_iter()
        .filter_map(|(combo, key)| h.next().map(|handle| (combo, (handle, key))))
        .collect();
    Ok((session, TrustedHandles { kms, tests }))
}

/// Handles of the security officer's trusted objects, before they are adopted.
#[derive(Default)]
struct TrustedHandles {
    kms: BTreeMap<String, (ObjectHandle, rsa::RsaPublicKey)>,
    tests: BTreeMap<Combination, (ObjectHandle, rsa::RsaPublicKey)>,
}

impl TrustedHandles {
    fn adopt<'s, 'h>(self, session: &'s UserSession<'h>) -> Trusted<'s, 'h> {
        Trusted {
            kms_keys: self
                .kms
                .into_iter()
                .map(|(fp, (h, k))| (fp, WrappingKey::adopt(session, h, &k)))
                .collect(),
            test_keys: self
                .tests
                .into_iter()
                .map(|(combo, (h, k))| (combo, WrappingKey::adopt(session, h, &k)))
                .collect(),
        }
    }
}

/// `key-generated` or `key-found`.
type KeyStep = fn(ts::KeyRecord) -> Step;

/// How a key of the ceremony is obtained in this run.
enum HowObtained<'d> {
    /// Recorded by an earlier run: found again and checked against its record.
    Recorded(&'d RecordedKey),
    /// An existing token key (`source: existing`).
    Existing,
    /// An earlier run recorded the intent, not the generation: adopt the key
    /// if the token has it, else generate it with the intended `CKA_ID`.
    Intended(&'d str),
    /// This run recorded (and fsynced) the intent: generate with this `CKA_ID`.
    Fresh(Vec<u8>),
}

/// The key for `k`: found again (checked against the transcript), adopted
/// after a crash between generation and its record, or generated now. The
/// new `key-generated` / `key-found` entry is appended without an fsync (see
/// the module documentation).
fn obtain(
    session: &UserSession,
    index: &mut TokenIndex,
    policy: KeyPolicy,
    k: &KeyPlan,
    how: HowObtained,
    t: &mut TranscriptWriter,
    tpath: &Path,
) -> Result<HsmKey, Error> {
    let (key, step, adopted) = match how {
        HowObtained::Recorded(recorded) => return found_again(session, index, k, recorded),
        HowObtained::Existing => (
            keygen::find_existing_indexed(session, index, k.key_spec, k.label.as_str())?,
            Step::KeyFound as KeyStep,
            false,
        ),
        HowObtained::Intended(id_hex) => adopt_or_generate(session, index, policy, k, id_hex)?,
        HowObtained::Fresh(id) => {
            let key = keygen::generate_indexed(
                session,
                index,
                k.key_spec,
                k.label.as_str(),
                &id,
                policy,
            )?;
            (key, Step::KeyGenerated as KeyStep, false)
        }
    };
    let checks = key_checks::compute(session, &key)?;
    let protection = keygen::protection(session, key.handle)?;
    let record = ts::KeyRecord {
        label: k.label.to_string(),
        id_hex: hex::encode(&key.id),
        key_spec: k.key_spec,
        protection: Some(ts::Protection::from(&protection)),
        checks: Some(checks),
        adopted_after_interruption: Some(adopted),
        wrap_with_trusted: None,
    };
    t.append_deferred(step(record)).map_err(io(tpath))?;
    Ok(key)
}

/// A key recorded by an earlier run: same CKA_ID, same check value.
fn found_again(
    session: &UserSession,
    index: &TokenIndex,
    k: &KeyPlan,
    recorded: &RecordedKey,
) -> Result<HsmKey, Error> {
    let found = keygen::find_existing_indexed(session, index, k.key_spec, k.label.as_str())?;
    if hex::encode(&found.id) != recorded.id_hex {
        return Err(Error::KeySwapped {
            label: k.label.to_string(),
            reason: SwapReason::Id {
                found: hex::encode(&found.id),
                recorded: recorded.id_hex.clone(),
            },
        });
    }
    let now = key_checks::compute(session, &found)?;
    match &recorded.checks {
        Some(then) if *then != now => Err(Error::KeySwapped {
            label: k.label.to_string(),
            reason: SwapReason::CheckValue {
                now: describe_checks(&now),
                then: describe_checks(then),
            },
        }),
        _ => Ok(found),
    }
}

/// A key whose intent was recorded but not its generation: if the token has
/// it (with the intended CKA_ID, generated on the token, never revealed), adopt
/// it; if not, generate it now with the intended CKA_ID.
fn adopt_or_generate(
    session: &UserSession,
    index: &mut TokenIndex,
    policy: KeyPolicy,
    k: &KeyPlan,
    id_hex: &str,
) -> Result<(HsmKey, KeyStep, bool), Error> {
    match keygen::find_existing_indexed(session, index, k.key_spec, k.label.as_str()) {
        Ok(found) if hex::encode(&found.id) == id_hex => {
            let mut key = found;
            key.generated = true;
            Ok((key, Step::KeyGenerated, true))
        }
        Ok(found) => Err(Error::KeySwapped {
            label: k.label.to_string(),
            reason: SwapReason::Intent {
                intended: id_hex.to_string(),
                found: hex::encode(&found.id),
            },
        }),
        Err(HsmError::KeyNotFound { .. }) => {
            let id = hex::decode(id_hex).map_err(|_| Error::KeySwapped {
                label: k.label.to_string(),
                reason: SwapReason::RecordedIdNotHex(id_hex.to_string()),
            })?;
            let key = keygen::generate_indexed(
                session,
                index,
                k.key_spec,
                k.label.as_str(),
                &id,
                policy,
            )?;
            Ok((key, Step::KeyGenerated, false))
        }
        Err(e) => Err(e.into()),
    }
}

fn describe_checks(c: &KeyChecks) -> String {
    if let Some(kcv) = &c.kcv {
        format!("KCV {kcv}")
    } else if let Some(h) = &c.hmac_check {
        format!("{} {}", h.mac_algorithm, h.mac_hex)
    } else if let Some(p) = &c.public_key {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(p)
            .unwrap_or_default();
        format!("public key SHA-256 {}", Fingerprint::of(&der).hex())
    } else {
        "(none)".into()
    }
}

/// Wrap `key` for one target, after checking the parameters again (they may
/// have expired since the plan was checked) and taking the wrapping key's
/// confirmation from the confirmed parameters digest.
#[allow(clippy::too_many_arguments)]
fn wrap_target(
    c: &CheckedCeremony,
    opts: &RunOptions,
    session: &UserSession,
    passes: &SelfTests,
    trusted: &BTreeMap<String, WrappingKey>,
    k: &KeyPlan,
    ct: &CheckedTarget,
    key: &HsmKey,
) -> Result<Wrapped, Error> {
    let params = ImportParameters::parse(&ct.params_bytes, time::OffsetDateTime::now_utc())?;
    let confirmed = opts.parameters.wrapping_key(c, &params)?;
    let pass = passes.get(
        k.key_spec,
        ct.target.wrapping_algorithm,
        params.wrapping_key_bits,
    )?;
    wrap_for_target_with(
        session,
        key,
        &params,
        ct.target.wrapping_algorithm,
        &confirmed,
        pass,
        trusted.get(&hex::encode(params.wrapping_key_sha256())),
    )
}

fn wrapped_record(
    k: &KeyPlan,
    ct: &CheckedTarget,
    w: &Wrapped,
    files: &[(String, String)],
) -> Step {
    let m = &w.manifest;
    let name = format!("{}/{}", k.label, ct.target.name);
    Step::Wrapped(ts::Wrapped::Target(ts::TargetWrapped {
        label: k.label.to_string(),
        target: ct.target.name.to_string(),
        key_id: m.key_id.clone(),
        wrapping_algorithm: m.wrapping_algorithm,
        wrapping_key_sha256: m.wrapping_key_sha256.clone(),
        import_parameters_sha256: m.import_parameters_sha256.clone(),
        import_token_sha256: m.import_token_sha256.clone(),
        mechanism: m.wrap_method.clone(),
        self_test: m.self_test.clone(),
        kcv: m.kcv.clone(),
        hmac_check: m.hmac_check.clone(),
        public_key: m.public_key.clone(),
        outputs: files
            .iter()
            .map(|(n, h)| OutputFile {
                path: format!("{name}/{n}"),
                sha256: h.clone(),
            })
            .collect(),
    }))
}

/// Remove what an interrupted run left for `target` under `key_dir` without
/// recording it: the bundle directory (renamed into place, not recorded) and
/// staging directories (`.TARGET.partial-PID`). Each must be a real
/// directory holding only bundle files; anything else stops the run.
fn discard_unrecorded(
    key_dir: &Path,
    target: &TargetName,
    t: &mut TranscriptWriter,
    tpath: &Path,
) -> Result<(), Error> {
    let staging_prefix = format!(".{target}.partial-");
    let mut leftovers: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(key_dir).map_err(io(key_dir))? {
        let e = e.map_err(io(key_dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == target.as_str() || name.starts_with(&staging_prefix) {
            leftovers.push(e.path());
        }
    }
    leftovers.sort();
    for dir in leftovers {
        remove_bundle_dir(&dir)?;
        let shown = format!(
            "{}/{}",
            key_dir
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            dir.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        t.append(Step::DiscardedUnrecordedOutput(ts::Discarded {
            path: shown,
            reason: "written by an interrupted run but never recorded".into(),
        }))
        .map_err(io(tpath))?;
    }
    Ok(())
}

/// Remove `dir` if it is a real directory holding only regular bundle files.
fn remove_bundle_dir(dir: &Path) -> Result<(), Error> {
    let foreign = |why: ForeignReason| Error::Foreign {
        path: dir.to_path_buf(),
        why,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !meta.file_type().is_dir() {
        return Err(foreign(ForeignReason::NotADirectory));
    }
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let kind = e.file_type().map_err(io(dir))?;
        if !kind.is_file() || !BUNDLE_FILES.contains(&name.as_str()) {
            return Err(foreign(ForeignReason::NotABundleFile(name)));
        }
        files.push(e.path());
    }
    for f in files {
        std::fs::remove_file(&f).map_err(io(&f))?;
    }
    std::fs::remove_dir(dir).map_err(io(dir))?;
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Write the media summary and the completion entry.
fn finish(
    c: &CheckedCeremony,
    out: &Path,
    t: &mut TranscriptWriter,
    tpath: &Path,
) -> Result<String, Error> {
    // An unrecorded summary is from an interrupted run: ours to replace if it
    // is a plain file (never through a symlink).
    let summary_path = out.join(SUMMARY);
    match std::fs::symlink_metadata(&summary_path) {
        Ok(m) if m.file_type().is_file() => {
            std::fs::remove_file(&summary_path).map_err(io(&summary_path))?
        }
        Ok(_) => {
            return Err(Error::Foreign {
                path: summary_path,
                why: ForeignReason::NotAPlainFile,
            })
        }
        Err(_) => {}
    }
    let text = media_summary(c, out)?;
    write_new_file(&summary_path, text.as_bytes())?;
    t.append(Step::CeremonyComplete(ts::CeremonyComplete {
        keys: c.file.keys.len() as u64,
        wraps: c.targets.iter().map(Vec::len).sum::<usize>() as u64,
        outputs: vec![OutputFile {
            path: SUMMARY.into(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        }],
    }))
    .map_err(io(tpath))
}

/// What is on the media: the parameters digest, every bundle with its KMS key,
/// wrapping-key fingerprint and check value, and every file with its size and
/// SHA-256.
fn media_summary(c: &CheckedCeremony, out: &Path) -> Result<String, Error> {
    let f = &c.file;
    let mut s = format!(
        "# {}\n\n{}\n\nParameters digest (every wrapping key and import token; compare with the bastion's):\n\n```\n{}\n```\n\nBundles (import each with `byok-bastion import DIR --target LABEL/TARGET`):\n\n",
        f.ceremony_id,
        f.purpose,
        c.parameters_digest.grouped()
    );
    for k in &f.keys {
        for t in &k.targets {
            let dir = t.name.join_to(&k.label.join_to(out));
            let path = dir.join(manifest::MANIFEST);
            let (m, _) =
                manifest::Manifest::read(&path).map_err(|e| io(&path)(std::io::Error::other(e)))?;
            let check = m
                .kcv
                .map(|v| format!("KCV {v}"))
                .or(m
                    .hmac_check
                    .map(|h| format!("{} {}", h.mac_algorithm, h.mac_hex)))
                .or(m.public_key.map(|p| format!("public key (base64 DER) {p}")))
                .unwrap_or_default();
            s += &format!(
                "* `{}/{}`: {} for `{}` ({}, wrapping key SHA-256 `{}`); {}\n",
                k.label,
                t.name,
                m.key_spec,
                m.key_id,
                m.wrapping_algorithm,
                m.wrapping_key_sha256,
                check
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

/// Self-test results, one per key spec × algorithm × wrapping-key size.
struct SelfTests(BTreeMap<Combination, SelfTestPass>);

impl SelfTests {
    /// Self-test every combination in `needed`; with trusted wrapping, each
    /// under its own trusted test key, destroyed as soon as its test ends.
    fn prove_all(
        needed: &[Combination],
        session: &UserSession,
        mechanisms: &Mechanisms,
        mut trusted_test_keys: BTreeMap<Combination, WrappingKey>,
    ) -> Result<Self, Error> {
        let mut passes = BTreeMap::new();
        for &(spec, alg, bits) in needed {
            let pass = match trusted_test_keys.remove(&(spec, alg, bits)) {
                Some(test_key) => selftest::prove_trusted(
                    session,
                    mechanisms,
                    spec,
                    alg,
                    bits,
                    AesWrapPreference::Auto,
                    test_key,
                )?,
                None => selftest::prove(session, mechanisms, spec, alg, bits)?,
            };
            passes.insert((spec, alg, bits), pass);
        }
        Ok(SelfTests(passes))
    }

    fn get(
        &self,
        spec: KeySpec,
        alg: WrappingAlgorithm,
        bits: usize,
    ) -> Result<&SelfTestPass, Error> {
        self.0.get(&(spec, alg, bits)).ok_or_else(|| {
            Error::Hsm(HsmError::SelfTest {
                token: String::new(),
                what: format!("{spec} with {alg} under RSA-{bits}"),
                detail: "no self-test was run for this combination before wrapping".into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_order_and_both_limits() {
        let lens = |runs: Vec<&[usize]>| runs.iter().map(|r| r.len()).collect::<Vec<_>>();
        // One target per key: 32 keys per batch.
        let one = vec![1; 100];
        assert_eq!(lens(cut(&one, |n| *n)), [32, 32, 32, 4]);
        // Four targets per key: 64 bundles, so 16 keys per batch.
        let four = vec![4; 40];
        assert_eq!(lens(cut(&four, |n| *n)), [16, 16, 8]);
        // A key with more targets than a batch holds goes alone; the others fill up.
        let mixed = [1, 70, 1, 63, 1, 1];
        assert_eq!(lens(cut(&mixed, |n| *n)), [1, 1, 2, 2]);
        let flat: Vec<usize> = cut(&mixed, |n| *n).concat();
        assert_eq!(flat, mixed, "every key once, in order");
        assert!(cut(&[] as &[usize], |n| *n).is_empty());
    }

    #[test]
    fn only_real_bundle_directories_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // A bundle directory holding only bundle files: removed.
        let ok = tmp.path().join("eu-west-1");
        std::fs::create_dir(&ok).unwrap();
        for f in BUNDLE_FILES {
            std::fs::write(ok.join(f), b"x").unwrap();
        }
        remove_bundle_dir(&ok).unwrap();
        assert!(!ok.exists());
        // A stray file: refused, nothing removed.
        let stray = tmp.path().join("us-east-1");
        std::fs::create_dir(&stray).unwrap();
        std::fs::write(stray.join(BUNDLE_FILES[0]), b"x").unwrap();
        std::fs::write(stray.join("notes.txt"), b"x").unwrap();
        match remove_bundle_dir(&stray) {
            Err(Error::Foreign { path, why }) => {
                assert_eq!(path, stray);
                assert_eq!(why, ForeignReason::NotABundleFile("notes.txt".into()));
            }
            other => panic!("{other:?}"),
        }
        assert!(stray.join(BUNDLE_FILES[0]).exists());
        // A symlink to a directory: refused, its target untouched.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&stray, &link).unwrap();
        assert!(matches!(
            remove_bundle_dir(&link),
            Err(Error::Foreign {
                why: ForeignReason::NotADirectory,
                ..
            })
        ));
        assert!(stray.join("notes.txt").exists());
        let e = remove_bundle_dir(&stray).unwrap_err().to_string();
        assert!(
            e.contains(
                "(it holds \"notes.txt\", which is not a bundle file); it was left untouched"
            ),
            "{e}"
        );
    }

    #[test]
    fn swap_reasons_keep_their_words() {
        let e = Error::KeySwapped {
            label: "k".into(),
            reason: SwapReason::Id {
                found: "01".into(),
                recorded: "02".into(),
            },
        };
        assert!(e
            .to_string()
            .starts_with("key \"k\": its CKA_ID is 01, but the transcript recorded 02. The key on the token is not the one this ceremony generated"));
        assert_eq!(
            SwapReason::RecordedIdNotHex("zz".into()).to_string(),
            "the recorded CKA_ID \"zz\" is not hex"
        );
    }
}
