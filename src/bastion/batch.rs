//! Every bundle of a ceremony directory in one run: checks first (nothing is
//! sent unless every bundle passes), then KMS calls with bounded concurrency,
//! a progress line per bundle and a summary. Safe to re-run: bundles with a
//! receipt are reported, not imported again.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::errors::{BastionError, Refusal};
use super::import::{self, check_bundle, ImportOptions, Receipt};
use super::prove::{self, Proof, Verdict};
use super::regions::Regions;
use super::rotate::{self, Rotation};
use super::state::StateDir;
use crate::bundle::manifest::{self, Manifest};
use crate::ceremony::VerifiedCeremony;
use crate::kms::import_params::MAX_FILE_LEN;

/// What happened to one bundle.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// ImportKeyMaterial succeeded now.
    Imported,
    /// A receipt shows an earlier import; nothing was sent.
    AlreadyImported,
    /// KMS already held this bundle's key (a lost response or a crash before
    /// the receipt): proven, receipt written, no import sent.
    Reconciled,
    /// KMS's own answer ties the key to this bundle.
    Proven,
    /// The key works, but nothing KMS said ties it to this bundle (see `detail`).
    NotProven,
    /// RotateKeyOnDemand made the imported material current (or it already was).
    Rotated,
    /// Nothing to do for this bundle (see `detail`).
    Skipped,
    /// Not started: the batch was interrupted (SIGINT/SIGTERM) first.
    Left,
    /// It failed (see `detail`).
    Failed,
}

/// One bundle's line of a batch.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// `LABEL/TARGET` (or `""` for a single wrap).
    pub target: String,
    /// The KMS key.
    pub key_arn: Option<String>,
    /// What happened.
    pub status: Status,
    /// KMS's KeyMaterialId, when known.
    pub key_material_id: Option<String>,
    /// What was proven, why it was skipped, or why it failed.
    pub detail: String,
    /// ImportKeyMaterial retries (throttling, server errors, lost connections).
    pub retries: u32,
}

impl Outcome {
    fn failed(target: &str, key_arn: Option<String>, e: &BastionError) -> Self {
        Outcome {
            target: target.to_string(),
            key_arn,
            status: Status::Failed,
            key_material_id: None,
            detail: e.to_string(),
            retries: 0,
        }
    }
}

/// A batch's totals.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Count per status.
    pub counts: BTreeMap<String, usize>,
    /// Bundles in the batch.
    pub total: usize,
    /// ImportKeyMaterial retries in all.
    pub retries: u64,
}

impl Summary {
    /// Count the outcomes.
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut counts = BTreeMap::new();
        for o in outcomes {
            let name = serde_json::to_value(&o.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            *counts.entry(name).or_insert(0) += 1;
        }
        Summary {
            counts,
            total: outcomes.len(),
            retries: outcomes.iter().map(|o| u64::from(o.retries)).sum(),
        }
    }

    /// Bundles that failed.
    pub fn failed(&self) -> usize {
        self.counts.get("failed").copied().unwrap_or(0)
    }

    /// Bundles not started because the batch was interrupted.
    pub fn left(&self) -> usize {
        self.counts.get("left").copied().unwrap_or(0)
    }

    /// Bundles whose key is usable but not proven.
    pub fn not_proven(&self) -> usize {
        self.counts.get("not_proven").copied().unwrap_or(0)
    }

    /// `4 imported, 2 already_imported, 0 failed (of 6 bundles)`.
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = self
            .counts
            .iter()
            .filter(|(k, _)| k.as_str() != "failed")
            .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
            .collect();
        parts.push(format!("{} failed", self.failed()));
        let retries = if self.retries > 0 {
            format!("; {} ImportKeyMaterial retries", self.retries)
        } else {
            String::new()
        };
        format!("{} (of {} bundles){retries}", parts.join(", "), self.total)
    }
}

/// Set when a batch should start nothing more (SIGINT or SIGTERM): calls in
/// flight finish and are recorded, the rest are reported as left.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<std::sync::atomic::AtomicBool>);

impl StopFlag {
    /// A flag nothing sets (yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Start nothing more; returns whether it was already set.
    pub fn stop(&self) -> bool {
        self.0.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the batch should start nothing more.
    pub fn stopped(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A flag set by the first SIGINT or SIGTERM (which no longer kill the
    /// process); a second one exits at once with status 130. Call inside the runtime.
    pub fn on_signals() -> Result<Self, BastionError> {
        use tokio::signal::unix::{signal, SignalKind};
        let flag = StopFlag::new();
        let listen = |kind| signal(kind).map_err(BastionError::Signals);
        let (mut int, mut term) = (
            listen(SignalKind::interrupt())?,
            listen(SignalKind::terminate())?,
        );
        let f = flag.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if f.stop() {
                    eprintln!("interrupted again: stopping now; calls in flight may have reached KMS without a receipt: the next run reconciles them with KMS");
                    std::process::exit(130);
                }
                eprintln!("interrupted: starting nothing more; waiting for the calls in flight to finish and be recorded (interrupt again to stop at once)");
            }
        });
        Ok(flag)
    }
}

/// Called after each bundle: `(done, total, outcome)`.
pub type Progress<'a> = &'a (dyn Fn(usize, usize, &Outcome) + Sync);

/// Run `work` on every item, at most `jobs` at a time; results in the items'
/// order. `on_done` sees each result as it finishes (for a progress line).
/// A task that panicked gives `on_panic(item)`'s result instead. Once `stop`
/// is set nothing more starts: running tasks finish, and items never started
/// give `on_left(item)`'s result.
pub async fn map_bounded<I, T, F, Fut>(
    items: Vec<I>,
    jobs: usize,
    work: F,
    mut on_done: impl FnMut(usize, &T),
    on_panic: impl Fn(&I) -> T,
    stop: &StopFlag,
    on_left: impl Fn(&I) -> T,
) -> Vec<T>
where
    I: Clone,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let total = items.len();
    let mut pending = items.iter().cloned().enumerate();
    let mut running = tokio::task::JoinSet::new();
    let mut done: Vec<(usize, T)> = Vec::with_capacity(total);
    let mut ids = BTreeMap::new();
    loop {
        while running.len() < jobs.max(1) && !stop.stopped() {
            let Some((i, item)) = pending.next() else {
                break;
            };
            let fut = work(item);
            let handle = running.spawn(async move { (i, fut.await) });
            ids.insert(handle.id(), i);
        }
        let finished = match running.join_next_with_id().await {
            None => break,
            Some(Ok((_, (i, t)))) => (i, t),
            Some(Err(e)) => {
                let i = ids.get(&e.id()).copied().unwrap_or(0);
                (i, on_panic(&items[i]))
            }
        };
        done.push(finished);
        let (_, last) = done.last().expect("just pushed");
        on_done(done.len(), last);
    }
    for (i, item) in pending {
        done.push((i, on_left(&item)));
    }
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

/// Run `work` for every target, at most `jobs` at a time, with a progress
/// line per finished target; outcomes sorted by target.
pub async fn run_bounded<F, Fut>(
    mut targets: Vec<String>,
    jobs: usize,
    work: F,
    progress: Progress<'_>,
    stop: &StopFlag,
) -> Vec<Outcome>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    targets.sort();
    let total = targets.len();
    map_bounded(
        targets,
        jobs,
        work,
        |done, o| progress(done, total, o),
        |t| Outcome::failed(t, None, &BastionError::TaskPanicked(t.clone())),
        stop,
        |t| Outcome {
            target: t.clone(),
            key_arn: None,
            status: Status::Left,
            key_material_id: None,
            detail: "not started: interrupted".into(),
            retries: 0,
        },
    )
    .await
}

/// The bastion's own parameters files under `dir` (as written by `prepare`),
/// by SHA-256 of their import token. Files that are not parameters are ignored.
pub fn index_params(dir: &Path) -> Result<BTreeMap<[u8; 32], PathBuf>, BastionError> {
    let mut found = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| BastionError::Io {
            action: "read the parameters directory",
            path: d.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() && depth < 4 {
                stack.push((path, depth + 1));
            } else if ft.is_file()
                && path.extension().is_some_and(|e| e == "json")
                && entry
                    .metadata()
                    .is_ok_and(|m| m.len() <= MAX_FILE_LEN as u64)
            {
                if let Some(token) = token_of(&path) {
                    found.insert(Sha256::digest(&token).into(), path);
                }
            }
        }
    }
    Ok(found)
}

/// The import token in a parameters file (not otherwise checked here: `check_bundle` does).
fn token_of(path: &Path) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    base64::engine::general_purpose::STANDARD
        .decode(v.get("ImportToken")?.as_str()?)
        .ok()
}

/// One bundle ready to import.
#[derive(Clone, Debug)]
pub struct PlannedImport {
    /// `LABEL/TARGET`.
    pub target: String,
    /// The bastion's parameters file for it.
    pub params_file: PathBuf,
    /// The KMS key.
    pub key_arn: String,
    /// The Region from the parameters file.
    pub region: Option<String>,
    /// An earlier import's receipt (then nothing is sent).
    pub receipt: Option<Receipt>,
}

/// Match every bundle with the bastion's own parameters (by import token)
/// and run every check `import` runs. Refuses the whole batch, listing every
/// problem, if any bundle fails: nothing is sent for a half-good ceremony.
pub fn plan_import(
    state: &StateDir,
    v: &VerifiedCeremony,
    targets: &[String],
    params_dir: &Path,
) -> Result<Vec<PlannedImport>, BastionError> {
    let index = index_params(params_dir)?;
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    for target in targets {
        let name = if target.is_empty() {
            "the bundle"
        } else {
            target
        };
        let receipt = match import::receipt_of_this_bundle(state, v, target) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        if let Some(r) = receipt {
            plans.push(PlannedImport {
                target: target.clone(),
                params_file: PathBuf::new(),
                key_arn: r.key_arn.clone(),
                region: None,
                receipt: Some(r),
            });
            continue;
        }
        let token = match import::signed_file(v, &import::in_bundle(target, manifest::IMPORT_TOKEN))
        {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let digest: [u8; 32] = Sha256::digest(&token).into();
        let Some(params_file) = index.get(&digest) else {
            problems.push(format!(
                "{name}: no parameters file under {} holds this bundle's import token; it was wrapped for parameters this bastion did not fetch (or the file was moved)",
                params_dir.display()
            ));
            continue;
        };
        match check_bundle(state, v, target, params_file) {
            Ok((_, _, params)) => plans.push(PlannedImport {
                target: target.clone(),
                params_file: params_file.clone(),
                key_arn: params.key_id.clone(),
                region: params.region.clone(),
                receipt: None,
            }),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(Refusal::Batch {
            problems,
            total: targets.len(),
        }
        .into());
    }
    Ok(plans)
}

/// Import every planned bundle, `jobs` at a time; once `stop` is set,
/// nothing more starts.
#[allow(clippy::too_many_arguments)] // each is a distinct input of the batch
pub async fn import_all(
    regions: Arc<Regions>,
    state: Arc<StateDir>,
    v: Arc<VerifiedCeremony>,
    plans: Vec<PlannedImport>,
    opts: ImportOptions,
    jobs: usize,
    progress: Progress<'_>,
    stop: &StopFlag,
) -> Vec<Outcome> {
    let by_target: Arc<BTreeMap<String, PlannedImport>> =
        Arc::new(plans.into_iter().map(|p| (p.target.clone(), p)).collect());
    let targets = by_target.keys().cloned().collect();
    run_bounded(
        targets,
        jobs,
        |target| {
            let (regions, state, v, by_target, opts) = (
                regions.clone(),
                state.clone(),
                v.clone(),
                by_target.clone(),
                opts.clone(),
            );
            async move {
                let plan = &by_target[&target];
                if let Some(r) = &plan.receipt {
                    return Outcome {
                        target,
                        key_arn: Some(r.key_arn.clone()),
                        status: Status::AlreadyImported,
                        key_material_id: r.key_material_id.clone(),
                        detail: format!("imported on {}; nothing sent", r.imported_at),
                        retries: 0,
                    };
                }
                let b = match regions.for_key(&plan.key_arn, plan.region.as_deref()).await {
                    Ok(b) => b,
                    Err(e) => return Outcome::failed(&target, Some(plan.key_arn.clone()), &e),
                };
                let opts = ImportOptions {
                    params_file: plan.params_file.clone(),
                    ..opts
                };
                match import::import(&b, &state, &v, &target, &opts).await {
                    Ok((r, how)) => Outcome {
                        target,
                        key_arn: Some(r.key_arn.clone()),
                        status: match how {
                            import::Imported::Sent => Status::Imported,
                            import::Imported::Recorded => Status::AlreadyImported,
                            import::Imported::Reconciled => Status::Reconciled,
                        },
                        key_material_id: r.key_material_id.clone(),
                        detail: match how {
                            import::Imported::Reconciled => r.how.clone(),
                            _ => format!("{} import", r.import_type),
                        },
                        retries: if how == import::Imported::Recorded {
                            0
                        } else {
                            r.retries
                        },
                    },
                    Err(e) => Outcome::failed(&target, Some(plan.key_arn.clone()), &e),
                }
            }
        },
        progress,
        stop,
    )
    .await
}

/// The KMS key and Region a verified bundle names (from its signed manifest).
pub fn bundle_key(
    v: &VerifiedCeremony,
    target: &str,
) -> Result<(String, Option<String>), BastionError> {
    let m: Manifest = serde_json::from_slice(&import::signed_file(
        v,
        &import::in_bundle(target, manifest::MANIFEST),
    )?)
    .map_err(Refusal::NotAManifest)?;
    Ok((m.key_id, m.region))
}

/// Prove every bundle's KMS key holds the HSM's key, `jobs` at a time.
pub async fn verify_all(
    regions: Arc<Regions>,
    state: Arc<StateDir>,
    v: Arc<VerifiedCeremony>,
    jobs: usize,
    progress: Progress<'_>,
    stop: &StopFlag,
) -> Vec<Outcome> {
    run_bounded(
        v.bundles(),
        jobs,
        |target| {
            let (regions, state, v) = (regions.clone(), state.clone(), v.clone());
            async move {
                let (key, region) = match bundle_key(&v, &target) {
                    Ok(k) => k,
                    Err(e) => return Outcome::failed(&target, None, &e),
                };
                let proof: Result<Proof, BastionError> = async {
                    let b = regions.for_key(&key, region.as_deref()).await?;
                    prove::prove(&b, &state, &v, &target).await
                }
                .await;
                match proof {
                    Ok(p) => Outcome {
                        target,
                        key_arn: Some(p.key_arn),
                        status: match p.verdict {
                            Verdict::Proven => Status::Proven,
                            Verdict::UsableNotProven => Status::NotProven,
                        },
                        key_material_id: p.current_key_material_id,
                        detail: p.statement,
                        retries: 0,
                    },
                    Err(e) => Outcome::failed(&target, Some(key), &e),
                }
            }
        },
        progress,
        stop,
    )
    .await
}

/// Rotate every bundle of the verified ceremony that this bastion imported
/// as NEW_KEY_MATERIAL (per its own receipts), `jobs` at a time; other
/// bundles are skipped with the reason.
pub async fn rotate_all(
    regions: Arc<Regions>,
    state: Arc<StateDir>,
    v: Arc<VerifiedCeremony>,
    targets: Vec<String>,
    jobs: usize,
    progress: Progress<'_>,
    stop: &StopFlag,
) -> Vec<Outcome> {
    run_bounded(
        targets,
        jobs,
        |target| {
            let (regions, state, v) = (regions.clone(), state.clone(), v.clone());
            async move {
                let receipt =
                    match rotate::rotation_receipt(&state, &v, &target) {
                        Ok(Some(r)) => r,
                        Ok(None) => return Outcome {
                            target,
                            key_arn: None,
                            status: Status::Skipped,
                            key_material_id: None,
                            detail:
                                "not imported by this bastion (no receipt in its state directory)"
                                    .into(),
                            retries: 0,
                        },
                        Err(e) => return Outcome::failed(&target, None, &e),
                    };
                if receipt.import_type != "NEW_KEY_MATERIAL" {
                    return Outcome {
                        target,
                        key_arn: Some(receipt.key_arn),
                        status: Status::Skipped,
                        key_material_id: receipt.key_material_id,
                        detail:
                            "first material of its key (not NEW_KEY_MATERIAL): nothing to rotate"
                                .into(),
                        retries: 0,
                    };
                }
                let r: Result<Rotation, BastionError> = async {
                    let b = regions
                        .for_key(&receipt.key_arn, Some(&receipt.region))
                        .await?;
                    rotate::rotate(&b, &receipt).await
                }
                .await;
                match r {
                    Ok(r) => Outcome {
                        target,
                        key_arn: Some(r.key_arn),
                        status: Status::Rotated,
                        detail: if r.before == r.after {
                            "already current".into()
                        } else {
                            format!(
                                "current material was {}",
                                r.before.as_deref().unwrap_or("none")
                            )
                        },
                        key_material_id: r.after,
                        retries: 0,
                    },
                    Err(e) => Outcome::failed(&target, Some(receipt.key_arn), &e),
                }
            }
        },
        progress,
        stop,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_line() {
        let o = |t: &str, s: Status| Outcome {
            target: t.into(),
            key_arn: None,
            status: s,
            key_material_id: None,
            detail: String::new(),
            retries: 0,
        };
        let s = Summary::of(&[
            o("a/x", Status::Imported),
            o("a/y", Status::AlreadyImported),
            o("b/x", Status::Imported),
        ]);
        assert_eq!(s.failed(), 0);
        assert_eq!(
            s.line(),
            "1 already imported, 2 imported, 0 failed (of 3 bundles)"
        );
        let s = Summary::of(&[o("a/x", Status::Failed)]);
        assert_eq!(s.failed(), 1);
        assert_eq!(s.line(), "1 failed (of 1 bundles)");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn bounded_keeps_order_and_limit_and_survives_a_panic() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut seen = 0;
        let out = map_bounded(
            (0..20u64).collect(),
            3,
            |i| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    // Later items finish first: the output order must not follow completion.
                    tokio::time::sleep(std::time::Duration::from_millis(20 - i)).await;
                    running.fetch_sub(1, SeqCst);
                    assert!(i != 7, "task 7 panics");
                    i * 10
                }
            },
            |done, _| {
                seen = done;
            },
            |i| 1000 + i,
            &StopFlag::new(),
            |i| 2000 + i,
        )
        .await;
        let want: Vec<u64> = (0..20)
            .map(|i| if i == 7 { 1007 } else { i * 10 })
            .collect();
        assert_eq!(out, want);
        assert_eq!(seen, 20);
        assert!(peak.load(SeqCst) <= 3, "peak {}", peak.load(SeqCst));
        assert!(peak.load(SeqCst) >= 2, "ran one at a time");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_lets_running_tasks_finish_and_starts_nothing_more() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let stop = StopFlag::new();
        let started = Arc::new(AtomicUsize::new(0));
        let out = map_bounded(
            (0..10u64).collect(),
            2,
            |i| {
                let (stop, started) = (stop.clone(), started.clone());
                async move {
                    started.fetch_add(1, SeqCst);
                    if i == 2 {
                        stop.stop();
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    i
                }
            },
            |_, _| {},
            |i| 1000 + i,
            &stop,
            |i| 2000 + i,
        )
        .await;
        // 0 and 1 ran, 2 started when a slot freed and set the flag; 3 may have
        // started in the other slot before it was set; nothing after.
        let ran = started.load(SeqCst);
        assert!((3..=4).contains(&ran), "{ran} started");
        let want: Vec<u64> = (0..10)
            .map(|i| if (i as usize) < ran { i } else { 2000 + i })
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn params_index_finds_tokens_and_ignores_other_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("eu")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        std::fs::write(
            d.path().join("eu/k.params.json"),
            serde_json::json!({"ImportToken": b64.encode(b"token-1")}).to_string(),
        )
        .unwrap();
        std::fs::write(d.path().join("notes.json"), "not json").unwrap();
        std::fs::write(d.path().join("x.txt"), "ImportToken").unwrap();
        let idx = index_params(d.path()).unwrap();
        assert_eq!(idx.len(), 1);
        let key: [u8; 32] = Sha256::digest(b"token-1").into();
        assert!(idx[&key].ends_with("eu/k.params.json"));
    }
}
