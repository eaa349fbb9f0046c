//! `byok-bastion`: the online half. Prepares import parameters, uploads only
//! ceremony directories that verify against the bastion's own custodian
//! policy, and proves KMS holds the HSM's key.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use byok_ceremony::bastion::batch::{self, Outcome, Summary};
use byok_ceremony::bastion::client::account_of;
use byok_ceremony::bastion::import::{self, Expiration, ImportOptions};
use byok_ceremony::bastion::prepare::{self, CeremonyPrepare, CreateSpec, Pacer};
use byok_ceremony::bastion::prove::{self, Verdict};
use byok_ceremony::bastion::regions::Regions;
use byok_ceremony::bastion::rotate;
use byok_ceremony::bastion::state::{self, StateDir};
use byok_ceremony::bastion::status;
use byok_ceremony::bastion::{Bastion, BastionError};
use byok_ceremony::ceremony::{self, Policy};
use byok_ceremony::fingerprint::Fingerprint;
use byok_ceremony::kms::{KeySpec, WrappingAlgorithm};
use clap::{Args, Parser, Subcommand};
use time::format_description::well_known::Rfc3339;

/// Talk to AWS KMS for byok-ceremony: prepare, import signed bundles, prove.
#[derive(Parser)]
#[command(name = "byok-bastion", version, about, long_about = None)]
struct Cli {
    /// AWS Region (default: the standard chain: AWS_REGION, profile).
    #[arg(long, global = true)]
    region: Option<String>,
    /// AWS profile (default: the standard chain).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Send KMS requests here (HTTPS, or plain HTTP to loopback only); default:
    /// the SDK's own chain (AWS_ENDPOINT_URL_KMS, profile services section,
    /// AWS_ENDPOINT_URL, profile endpoint_url), else KMS's endpoint for the Region.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    /// The bastion's own state (receipts of its imports, records of the
    /// parameters files it wrote); default: BYOK_STATE_DIR, else
    /// $XDG_STATE_HOME/byok-ceremony, else ~/.local/state/byok-ceremony.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch import parameters (optionally creating EXTERNAL keys) for the air-gapped side.
    Prepare(PrepareArgs),
    /// Import a ceremony directory that verifies against your custodian policy.
    Import(ImportArgs),
    /// Prove KMS holds the HSM's key (GenerateMac, GetPublicKey, or a round trip).
    Verify(VerifyArgs),
    /// Make NEW_KEY_MATERIAL imported from this bundle current (RotateKeyOnDemand) and confirm it.
    Rotate(RotateArgs),
    /// Which imported keys are out of rotation policy (exit code 3 if any needs action).
    Status(StatusArgs),
    /// Alias rotation: prove the bundle's key holds the HSM's key, then point the alias at it.
    MoveAlias(MoveAliasArgs),
    /// Disable an old key and schedule its deletion after a grace period (no alias may point to it).
    Retire(RetireArgs),
    /// The parameters digest of a ceremony file, from parameters this bastion fetched (no KMS call).
    ParamsDigest(ParamsDigestArgs),
    /// Which S3 buckets, DynamoDB tables and RDS databases are not on compliant keys (exit code 3 if any).
    Audit(byok_ceremony::bastion::audit::AuditArgs),
    /// Move S3 buckets and DynamoDB tables off replaced keys (dry run unless --apply); RDS: print the procedure.
    Repoint(byok_ceremony::bastion::repoint::RepointArgs),
}

#[derive(Args)]
struct ParamsDigestArgs {
    /// The completed ceremony file (this bastion's own copy).
    #[arg(long)]
    ceremony: PathBuf,
}

#[derive(Args)]
struct MoveAliasArgs {
    /// The imported bundle directory.
    dir: PathBuf,
    /// The alias to move (alias/NAME); created if missing.
    #[arg(long)]
    alias: String,
    /// The bastion's own custodian policy.
    #[arg(long)]
    policy: PathBuf,
    /// In a ceremony directory, the bundle LABEL/TARGET.
    #[arg(long, default_value = "")]
    target: String,
}

#[derive(Args)]
struct RetireArgs {
    /// The old key (ID or ARN).
    #[arg(long)]
    key: String,
    /// Days before KMS deletes it (7 to 30).
    #[arg(long)]
    grace_days: i32,
}

#[derive(Args)]
struct StatusArgs {
    /// Keys to report (ID, ARN or alias; an ARN's Region is used).
    #[arg(long = "key")]
    keys: Vec<String>,
    /// Regions whose EXTERNAL keys to report when no --key is given
    /// (comma-separated or repeated; default: the configured Region).
    #[arg(long = "regions", value_delimiter = ',')]
    regions: Vec<String>,
    /// Maximum age of key material in days before rotation is due.
    #[arg(long, default_value_t = 365)]
    max_age_days: i64,
    /// Keys read at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    jobs: u16,
}

#[derive(Args)]
struct RotateArgs {
    /// The bundle directory imported with --new-key-material.
    dir: PathBuf,
    /// The bastion's own custodian policy (the directory is verified first).
    #[arg(long)]
    policy: PathBuf,
    /// In a ceremony directory, the bundle LABEL/TARGET (default: every bundle).
    #[arg(long)]
    target: Option<String>,
    /// Bundles worked on at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    jobs: u16,
}

#[derive(Args)]
struct PrepareArgs {
    /// Existing KMS key (ID, ARN or alias), repeatable; an ARN's Region is used.
    #[arg(long = "key", conflicts_with = "ceremony")]
    keys: Vec<String>,
    /// Create a new EXTERNAL key of this spec first, repeatable.
    #[arg(long = "create", value_name = "KEY_SPEC", conflicts_with = "ceremony")]
    create: Vec<KeySpec>,
    /// A file of keys (ID, ARN or alias), one per line; blank lines and `#` comments ignored.
    #[arg(long, conflicts_with = "ceremony")]
    key_list: Option<PathBuf>,
    /// Description for created keys.
    #[arg(long, default_value = "byok-ceremony imported key")]
    description: String,
    /// Alias for the created key (with exactly one --create).
    #[arg(long, requires = "create")]
    alias: Option<String>,
    /// Tag created keys with KEY=VALUE, repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = prepare::parse_tag)]
    tags: Vec<(String, String)>,
    /// The wrapping algorithm to request (with --key/--create; a ceremony file names it per target).
    #[arg(long, required_unless_present = "ceremony")]
    wrapping_algorithm: Option<WrappingAlgorithm>,
    /// RSA_2048, RSA_3072 or RSA_4096 (a ceremony target may name its own).
    #[arg(long, default_value = "RSA_2048")]
    wrapping_key_spec: String,
    /// Directory for the parameters files (with --key/--create; created if missing).
    #[arg(long, required_unless_present = "ceremony")]
    out_dir: Option<PathBuf>,
    /// A draft ceremony file: prepare every target it lists (parameters go where it says).
    #[arg(long, requires = "out")]
    ceremony: Option<PathBuf>,
    /// With --ceremony: the completed ceremony file to write, next to the draft.
    #[arg(long, requires = "ceremony")]
    out: Option<PathBuf>,
    /// With --ceremony: create an EXTERNAL key for each target that names no kms_key.
    #[arg(long, requires = "ceremony")]
    create_missing: bool,
    /// GetParametersForImport calls per second per Region (KMS's quota: about 1 per
    /// account and Region); 0 for no pacing.
    #[arg(long, default_value_t = 0.9)]
    params_per_second: f64,
}

#[derive(Args)]
struct ImportArgs {
    /// The ceremony (or wrap) directory the custodians signed.
    dir: PathBuf,
    /// The bastion's own custodian policy.
    #[arg(long)]
    policy: PathBuf,
    /// The parameters file `prepare` wrote for this bundle (one bundle).
    #[arg(
        long,
        conflicts_with = "params_dir",
        required_unless_present = "params_dir"
    )]
    params: Option<PathBuf>,
    /// Where `prepare` wrote its parameters files: each bundle is matched by its import token.
    #[arg(long)]
    params_dir: Option<PathBuf>,
    /// Key material never expires.
    #[arg(long, conflicts_with = "valid_to")]
    no_expiry: bool,
    /// Key material expires at this UTC time (RFC 3339, at most 365 days ahead).
    #[arg(long)]
    valid_to: Option<String>,
    /// Import as NEW_KEY_MATERIAL (on-demand rotation of a symmetric key).
    #[arg(long)]
    new_key_material: bool,
    /// In a ceremony directory, the bundle LABEL/TARGET to import (default: every bundle).
    #[arg(long)]
    target: Option<String>,
    /// Bundles imported at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    jobs: u16,
    /// ImportKeyMaterial calls per second per account and Region (KMS's quota:
    /// about 15); 0 for no pacing.
    #[arg(long, default_value_t = 10.0)]
    imports_per_second: f64,
}

#[derive(Args)]
struct VerifyArgs {
    /// The ceremony (or wrap) directory.
    dir: PathBuf,
    /// The bastion's own custodian policy.
    #[arg(long)]
    policy: PathBuf,
    /// In a ceremony directory, the bundle LABEL/TARGET to check (default: every bundle).
    #[arg(long)]
    target: Option<String>,
    /// Bundles checked at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    jobs: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (BastionError::OutOfPolicy(_) | BastionError::NonCompliant(_))) => {
            eprintln!("{e}");
            ExitCode::from(3)
        }
        Err(e @ BastionError::Interrupted { .. }) => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn regions(cli: &Cli) -> Arc<Regions> {
    Arc::new(
        Regions::new(
            cli.region.clone(),
            cli.profile.clone(),
            Box::new(|b: &Bastion| {
                eprintln!(
                    "KMS endpoint: {} ({}) (Region {})",
                    b.endpoint.url, b.endpoint.source, b.region
                );
            }),
        )
        .with_endpoint_url(cli.endpoint_url.clone()),
    )
}

/// Open the bastion's state directory (created 0700 if missing).
/// Show the parameters digest for the custodians (stderr: it is for people).
fn print_parameters_digest(digest: &Fingerprint) {
    eprintln!("Parameters digest (print it or write it down here; it must not travel on the media; the custodians type it at `byok-airgap ceremony run`):");
    for line in digest.grouped().lines() {
        eprintln!("    {line}");
    }
}

fn state_dir(cli: &Cli) -> Result<StateDir, BastionError> {
    let (path, _) = state::resolve(cli.state_dir.as_deref())?;
    Ok(StateDir::open(&path)?)
}

/// Say once that receipts next to the bundles (from the media or an older
/// version) are not read.
fn note_receipts_on_media(dir: &Path) {
    let found = state::receipts_next_to(dir);
    if !found.is_empty() {
        eprintln!(
            "note: ignoring {} receipt file(s) next to {} (e.g. {}): only receipts in the bastion's own state directory count",
            found.len(),
            dir.display(),
            found[0].display()
        );
    }
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializes"));
}

fn print_fingerprint(hex_fp: &str) -> Result<(), BastionError> {
    let mut fp = [0u8; 32];
    hex::decode_to_slice(hex_fp, &mut fp).map_err(|e| BastionError::Local(e.to_string()))?;
    for line in Fingerprint(fp).grouped().lines() {
        eprintln!("    {line}");
    }
    Ok(())
}

fn print_prepared(p: &prepare::Prepared) -> Result<(), BastionError> {
    if let Some(acct) = account_of(&p.key_arn) {
        eprintln!("account {acct}");
    }
    eprintln!(
        "{} ({}) → {}",
        p.key_arn,
        p.key_spec,
        p.params_file.display()
    );
    eprintln!(
        "  wrapping key SHA-256 (read aloud to the custodians), valid until {}:",
        p.valid_to
    );
    print_fingerprint(&p.wrapping_key_sha256)
}

/// `[3/6] webhooks/eu-west-1: imported arn:… (KeyMaterialId …)`
fn progress_line(done: usize, total: usize, o: &Outcome) {
    let status = serde_json::to_value(&o.status)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default();
    eprintln!(
        "[{done}/{total}] {}: {status} {}{}{}",
        if o.target.is_empty() {
            "bundle"
        } else {
            &o.target
        },
        o.key_arn.as_deref().unwrap_or(""),
        o.key_material_id
            .as_deref()
            .map(|k| format!(" (KeyMaterialId {k})"))
            .unwrap_or_default(),
        if o.detail.is_empty() {
            String::new()
        } else {
            format!("\n      {}", o.detail)
        }
    );
}

/// Print a batch's summary (and JSON), and fail if any bundle failed.
fn finish_batch(cli: &Cli, what: &str, outcomes: &[Outcome]) -> Result<(), BastionError> {
    let summary = Summary::of(outcomes);
    eprintln!("{what}: {}", summary.line());
    if cli.json {
        print_json(&serde_json::json!({ "summary": summary, "bundles": outcomes }));
    }
    if summary.left() > 0 {
        return Err(BastionError::Interrupted {
            done: summary.total - summary.left(),
            left: summary.left(),
        });
    }
    if summary.failed() > 0 {
        return Err(BastionError::Local(format!(
            "{} bundle(s) failed (listed above); fix the cause and run the same command again: finished bundles are not repeated",
            summary.failed()
        )));
    }
    if summary.not_proven() > 0 {
        return Err(BastionError::NotProven(format!(
            "{} bundle(s) are usable but not proven (listed above, with why)",
            summary.not_proven()
        )));
    }
    Ok(())
}

/// Verify the directory against the bastion's own policy; nothing reaches KMS otherwise.
fn verify_dir(dir: &Path, policy: &Path) -> Result<ceremony::VerifiedCeremony, BastionError> {
    let policy = Policy::read(policy)?;
    let verified = ceremony::verify(dir, &policy)?;
    eprintln!(
        "verified ceremony {} signed by {} (policy: {} of {} custodians)",
        verified.ceremony_id(),
        verified.signers().join(", "),
        policy.threshold,
        policy.custodians.len()
    );
    Ok(verified)
}

/// The bundles a command works on: the one named, else all of them.
fn chosen_bundles(
    v: &ceremony::VerifiedCeremony,
    target: &Option<String>,
) -> Result<Vec<String>, BastionError> {
    let all = v.bundles();
    match target {
        Some(t) if all.contains(t) => Ok(vec![t.clone()]),
        Some(t) => Err(BastionError::Local(format!(
            "{} has no bundle {t:?}; it has: {}",
            v.dir().display(),
            all.join(", ")
        ))),
        None if all.is_empty() => Err(BastionError::Local(format!(
            "{} holds no wrap bundle",
            v.dir().display()
        ))),
        None => Ok(all),
    }
}

async fn run(cli: Cli) -> Result<(), BastionError> {
    let regions = regions(&cli);
    match &cli.command {
        Command::Prepare(a) => {
            if let (Some(draft), Some(out)) = (&a.ceremony, &a.out) {
                if !a.tags.is_empty() && !a.create_missing {
                    return Err(BastionError::Local(
                        "--tag applies to keys created with --create-missing".into(),
                    ));
                }
                prepare::wrapping_key_bits(&a.wrapping_key_spec)?;
                let state = state_dir(&cli)?;
                let done = prepare::prepare_ceremony(
                    &regions,
                    &state,
                    &CeremonyPrepare {
                        draft,
                        out,
                        create_missing: a.create_missing,
                        default_wrapping_key_spec: &a.wrapping_key_spec,
                        tags: &a.tags,
                        params_per_second: a.params_per_second,
                    },
                    &|t| {
                        eprintln!(
                            "{}/{} in {}{}:",
                            t.label,
                            t.target,
                            t.region,
                            if t.created {
                                " (key created now)"
                            } else if t.kept {
                                " (parameters kept from an earlier run)"
                            } else {
                                ""
                            }
                        );
                        let _ = print_prepared(&t.prepared);
                    },
                )
                .await?;
                eprintln!(
                    "wrote {} ({} targets); take it with the parameters files to the air-gapped workstation and check it with `byok-airgap ceremony plan`",
                    out.display(),
                    done.len()
                );
                let (_, digest) = prepare::parameters_digest(&state_dir(&cli)?, out)?;
                print_parameters_digest(&digest);
                if cli.json {
                    print_json(&done);
                }
                return Ok(());
            }
            let (Some(alg), Some(out_dir)) = (a.wrapping_algorithm, &a.out_dir) else {
                return Err(BastionError::Local(
                    "give --wrapping-algorithm and --out-dir, or prepare a ceremony file with --ceremony".into(),
                ));
            };
            let mut keys = a.keys.clone();
            if let Some(list) = &a.key_list {
                let text = std::fs::read_to_string(list).map_err(|e| {
                    BastionError::Local(format!("cannot read {}: {e}", list.display()))
                })?;
                keys.extend(
                    text.lines()
                        .map(|l| l.split('#').next().unwrap_or("").trim())
                        .filter(|l| !l.is_empty())
                        .map(String::from),
                );
            }
            if keys.is_empty() && a.create.is_empty() {
                return Err(BastionError::Local(
                    "name keys with --key or --key-list FILE, or create them with --create KEY_SPEC (or use --ceremony FILE)".into(),
                ));
            }
            if !a.tags.is_empty() && a.create.is_empty() {
                return Err(BastionError::Local(
                    "--tag applies to keys created here (--create, or --create-missing with --ceremony); tag existing keys with `aws kms tag-resource`".into(),
                ));
            }
            if a.alias.is_some() && a.create.len() != 1 {
                return Err(BastionError::Local(
                    "--alias names one key: use it with exactly one --create".into(),
                ));
            }
            if let Some(alias) = &a.alias {
                if !alias.starts_with("alias/") || alias.starts_with("alias/aws/") {
                    return Err(BastionError::Local(format!(
                        "--alias {alias:?} must be alias/NAME (and not alias/aws/…)"
                    )));
                }
            }
            prepare::wrapping_key_bits(&a.wrapping_key_spec)?;
            let state = state_dir(&cli)?;
            std::fs::create_dir_all(out_dir).map_err(|e| {
                BastionError::Local(format!("cannot create {}: {e}", out_dir.display()))
            })?;
            for spec in &a.create {
                let b = regions.default_region().await?;
                let arn = prepare::create(
                    &b,
                    &CreateSpec {
                        key_spec: *spec,
                        description: a.description.clone(),
                        alias: a.alias.clone(),
                        tags: a.tags.clone(),
                    },
                )
                .await?;
                eprintln!("created EXTERNAL {spec} key {arn}");
                keys.push(arn);
            }
            let mut pacer = Pacer::per_second(a.params_per_second);
            let mut done = Vec::new();
            for key in &keys {
                let b = regions.for_key(key, None).await?;
                let short = key.rsplit(['/', ':']).next().unwrap_or(key);
                let file = out_dir.join(format!("{short}.params.json"));
                pacer.wait(&b.region).await;
                let p = prepare::prepare(&b, &state, key, alg, &a.wrapping_key_spec, None, &file)
                    .await?;
                print_prepared(&p)?;
                done.push(p);
            }
            if cli.json {
                print_json(&done);
            }
        }
        Command::Import(a) => {
            let expiration = match (&a.valid_to, a.no_expiry) {
                (_, true) => Expiration::Never,
                (Some(t), false) => Expiration::At(
                    time::OffsetDateTime::parse(t, &Rfc3339).map_err(|_| BastionError::Local(format!("--valid-to {t:?} is not RFC 3339")))?,
                ),
                (None, false) => return Err(BastionError::Local("choose --no-expiry or --valid-to TIME (KMS's default model requires an expiry)".into())),
            };
            // Verify before connecting: nothing reaches KMS unless the custodians signed it.
            let verified = verify_dir(&a.dir, &a.policy)?;
            let targets = chosen_bundles(&verified, &a.target)?;
            let state = state_dir(&cli)?;
            note_receipts_on_media(&a.dir);
            let opts = ImportOptions {
                params_file: PathBuf::new(),
                expiration,
                new_key_material: a.new_key_material,
                pace: Some(Arc::new(prepare::RatePacer::per_second(
                    a.imports_per_second,
                ))),
            };
            if let Some(params) = &a.params {
                // One bundle, with its parameters file named.
                let [target] = targets.as_slice() else {
                    return Err(BastionError::Local(format!(
                        "{} holds {} bundles: name one with --target LABEL/TARGET, or import them all with --params-dir",
                        a.dir.display(),
                        targets.len()
                    )));
                };
                let (_, _, p) = import::check_bundle(&state, &verified, target, params)?;
                let b = regions.for_key(&p.key_id, p.region.as_deref()).await?;
                let opts = ImportOptions {
                    params_file: params.clone(),
                    ..opts
                };
                let (receipt, how) = import::import(&b, &state, &verified, target, &opts).await?;
                if how == import::Imported::Reconciled {
                    eprintln!(
                        "KMS already held this bundle's key in {} ({}); receipt written, nothing imported",
                        receipt.key_arn, receipt.how
                    );
                } else if how == import::Imported::Sent {
                    eprintln!(
                        "imported into {} (KeyMaterialId {})",
                        receipt.key_arn,
                        receipt.key_material_id.as_deref().unwrap_or("not reported")
                    );
                } else {
                    eprintln!(
                        "already imported on {} (receipt {}); nothing sent",
                        receipt.imported_at,
                        state
                            .receipt_path(verified.transcript_digest(), target)
                            .display()
                    );
                }
                if cli.json {
                    print_json(&receipt);
                }
                return Ok(());
            }
            let params_dir = a.params_dir.as_deref().unwrap_or(Path::new("."));
            let plans = batch::plan_import(&state, &verified, &targets, params_dir)?;
            eprintln!(
                "all {} bundles checked; importing {} at a time",
                plans.len(),
                a.jobs
            );
            let stop = batch::StopFlag::on_signals()?;
            let outcomes = batch::import_all(
                regions.clone(),
                Arc::new(state),
                Arc::new(verified),
                plans,
                opts,
                a.jobs.into(),
                &progress_line,
                &stop,
            )
            .await;
            finish_batch(&cli, "import", &outcomes)?;
        }
        Command::Status(a) => {
            let mut report = Vec::new();
            let jobs = usize::from(a.jobs);
            if a.keys.is_empty() {
                let mut clients = Vec::new();
                if a.regions.is_empty() {
                    clients.push(regions.default_region().await?);
                }
                for r in &a.regions {
                    clients.push(regions.region(r).await?);
                }
                for b in clients {
                    report.extend(status::status(b, &[], a.max_age_days, jobs).await?);
                }
            } else {
                // One pass per Region, keys in the order given within it.
                let mut by_region: Vec<(Arc<Bastion>, Vec<String>)> = Vec::new();
                for key in &a.keys {
                    let b = regions.for_key(key, None).await?;
                    match by_region.iter_mut().find(|(c, _)| c.region == b.region) {
                        Some((_, keys)) => keys.push(key.clone()),
                        None => by_region.push((b, vec![key.clone()])),
                    }
                }
                for (b, keys) in by_region {
                    report.extend(status::status(b, &keys, a.max_age_days, jobs).await?);
                }
            }
            if cli.json {
                print_json(&report);
            } else {
                println!(
                    "{:<14} {:<18} {:<14} {:>8} {:>8}  KEY / DETAIL",
                    "VERDICT", "KEY SPEC", "STATE", "AGE(d)", "DUE(d)"
                );
                for k in &report {
                    let verdict = serde_json::to_value(k.verdict)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    println!(
                        "{:<14} {:<18} {:<14} {:>8} {:>8}  {} {}\n{:>67}{}",
                        verdict,
                        k.key_spec,
                        k.key_state,
                        k.material_age_days
                            .map(|d| d.to_string())
                            .unwrap_or_else(|| "-".into()),
                        k.days_until_due
                            .map(|d| d.to_string())
                            .unwrap_or_else(|| "-".into()),
                        k.key_arn,
                        k.aliases.join(","),
                        "",
                        k.detail
                    );
                }
            }
            if report.iter().any(|k| k.verdict.needs_action()) {
                return Err(BastionError::OutOfPolicy(
                    report.iter().filter(|k| k.verdict.needs_action()).count(),
                ));
            }
        }
        Command::Audit(a) => {
            byok_ceremony::bastion::audit::main(
                a,
                regions.clone(),
                cli.profile.as_deref(),
                cli.json,
            )
            .await?
        }
        Command::Repoint(a) => {
            byok_ceremony::bastion::repoint::main(
                a,
                regions.clone(),
                cli.profile.as_deref(),
                &state_dir(&cli)?,
                cli.json,
            )
            .await?
        }
        Command::MoveAlias(a) => {
            let verified = verify_dir(&a.dir, &a.policy)?;
            let state = state_dir(&cli)?;
            let (key, region) = batch::bundle_key(&verified, &a.target)?;
            let b = regions.for_key(&key, region.as_deref()).await?;
            let m = byok_ceremony::bastion::alias::move_alias(
                &b, &state, &verified, &a.target, &a.alias,
            )
            .await?;
            eprintln!("PROVEN: {}", m.proof.statement);
            eprintln!(
                "{} → {} (was {})",
                m.alias,
                m.key,
                m.previous_key.as_deref().unwrap_or("not set")
            );
            if cli.json {
                print_json(&m);
            }
        }
        Command::ParamsDigest(a) => {
            let (lines, digest) = prepare::parameters_digest(&state_dir(&cli)?, &a.ceremony)?;
            if cli.json {
                print_json(&serde_json::json!({
                    "parameters_digest": digest.hex(),
                    "targets": lines,
                }));
            } else {
                for l in &lines {
                    eprintln!(
                        "{}  {}  {}  wrapping key {}",
                        l.bundle, l.key_arn, l.region, l.wrapping_key_sha256
                    );
                }
                print_parameters_digest(&digest);
                println!("{}", digest.hex());
            }
        }
        Command::Retire(a) => {
            let state = state_dir(&cli)?;
            let b = regions.for_key(&a.key, None).await?;
            let r = byok_ceremony::bastion::alias::retire(&b, &state, &a.key, a.grace_days).await?;
            eprintln!(
                "{} disabled; KMS deletes it on {}",
                r.key,
                r.deletion_date.as_deref().unwrap_or("(date not reported)")
            );
            if cli.json {
                print_json(&r);
            }
        }
        Command::Rotate(a) => {
            let verified = verify_dir(&a.dir, &a.policy)?;
            let targets = chosen_bundles(&verified, &a.target)?;
            let state = state_dir(&cli)?;
            note_receipts_on_media(&a.dir);
            if a.target.is_some() || targets == [String::new()] {
                let target = &targets[0];
                let receipt = rotate::rotation_receipt(&state, &verified, target)?.ok_or_else(|| {
                    BastionError::Refused(format!(
                        "this bastion has no receipt of importing {} (state directory {}): import it from here first; nothing rotated",
                        if target.is_empty() { "this bundle" } else { target },
                        state.path().display()
                    ))
                })?;
                let b = regions
                    .for_key(&receipt.key_arn, Some(&receipt.region))
                    .await?;
                let r = rotate::rotate(&b, &receipt).await?;
                eprintln!(
                    "rotated {}: current key material {} (was {})",
                    r.key_arn,
                    r.after.as_deref().unwrap_or("?"),
                    r.before.as_deref().unwrap_or("none")
                );
                if cli.json {
                    print_json(&r);
                }
                return Ok(());
            }
            let stop = batch::StopFlag::on_signals()?;
            let outcomes = batch::rotate_all(
                regions.clone(),
                Arc::new(state),
                Arc::new(verified),
                targets,
                a.jobs.into(),
                &progress_line,
                &stop,
            )
            .await;
            finish_batch(&cli, "rotate", &outcomes)?;
        }
        Command::Verify(a) => {
            let verified = verify_dir(&a.dir, &a.policy)?;
            let targets = chosen_bundles(&verified, &a.target)?;
            let state = state_dir(&cli)?;
            note_receipts_on_media(&a.dir);
            if a.target.is_some() || targets == [String::new()] {
                let target = &targets[0];
                let (key, region) = batch::bundle_key(&verified, target)?;
                let b = regions.for_key(&key, region.as_deref()).await?;
                let proof = prove::prove(&b, &state, &verified, target).await?;
                if cli.json {
                    print_json(&proof);
                }
                return match proof.verdict {
                    Verdict::Proven => {
                        eprintln!("PROVEN: {}: {}", proof.key_arn, proof.statement);
                        Ok(())
                    }
                    Verdict::UsableNotProven => Err(BastionError::NotProven(format!(
                        "{}: {}",
                        proof.key_arn, proof.statement
                    ))),
                };
            }
            let stop = batch::StopFlag::on_signals()?;
            let outcomes = batch::verify_all(
                regions.clone(),
                Arc::new(state),
                Arc::new(verified),
                a.jobs.into(),
                &progress_line,
                &stop,
            )
            .await;
            finish_batch(&cli, "verify", &outcomes)?;
        }
    }
    Ok(())
}
