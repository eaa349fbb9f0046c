//! `byok-bastion`: the online half. Prepares import parameters, uploads only
//! ceremony directories that verify against the bastion's own custodian
//! policy, and proves KMS holds the HSM's key.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use byok_ceremony::bastion::client::account_of;
use byok_ceremony::bastion::import::{self, Expiration, ImportOptions};
use byok_ceremony::bastion::prepare::{self, CreateSpec, PACE};
use byok_ceremony::bastion::prove;
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
    /// Keys to report (default: every EXTERNAL key in the account and Region).
    #[arg(long = "key")]
    keys: Vec<String>,
    /// Maximum age of key material in days before rotation is due.
    #[arg(long, default_value_t = 365)]
    max_age_days: i64,
}

#[derive(Args)]
struct RotateArgs {
    /// The bundle directory imported with --new-key-material.
    dir: PathBuf,
    /// In a ceremony directory, the bundle LABEL/TARGET.
    #[arg(long, default_value = "")]
    target: String,
}

#[derive(Args)]
struct PrepareArgs {
    /// Existing KMS key (ID, ARN or alias), repeatable.
    #[arg(long = "key")]
    keys: Vec<String>,
    /// Create a new EXTERNAL key of this spec first, repeatable.
    #[arg(long = "create", value_name = "KEY_SPEC")]
    create: Vec<KeySpec>,
    /// Description for created keys.
    #[arg(long, default_value = "byok-ceremony imported key")]
    description: String,
    /// The wrapping algorithm to request.
    #[arg(long)]
    wrapping_algorithm: WrappingAlgorithm,
    /// RSA_2048, RSA_3072 or RSA_4096.
    #[arg(long, default_value = "RSA_2048")]
    wrapping_key_spec: String,
    /// Directory for the parameters files (created if missing).
    #[arg(long)]
    out_dir: PathBuf,
}

#[derive(Args)]
struct ImportArgs {
    /// The ceremony (or wrap) directory the custodians signed.
    dir: PathBuf,
    /// The bastion's own custodian policy.
    #[arg(long)]
    policy: PathBuf,
    /// The parameters file `prepare` wrote for this key.
    #[arg(long)]
    params: PathBuf,
    /// Key material never expires.
    #[arg(long, conflicts_with = "valid_to")]
    no_expiry: bool,
    /// Key material expires at this UTC time (RFC 3339, at most 365 days ahead).
    #[arg(long)]
    valid_to: Option<String>,
    /// Import as NEW_KEY_MATERIAL (on-demand rotation of a symmetric key).
    #[arg(long)]
    new_key_material: bool,
    /// In a ceremony directory, the bundle LABEL/TARGET to import.
    #[arg(long, default_value = "")]
    target: String,
}

#[derive(Args)]
struct VerifyArgs {
    /// The ceremony (or wrap) directory.
    dir: PathBuf,
    /// The bastion's own custodian policy.
    #[arg(long)]
    policy: PathBuf,
    /// In a ceremony directory, the bundle LABEL/TARGET to check.
    #[arg(long, default_value = "")]
    target: String,
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
        Err(e @ BastionError::OutOfPolicy(_)) => {
            eprintln!("{e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(cli: &Cli) -> Result<Bastion, BastionError> {
    let b = Bastion::connect(cli.region.as_deref(), cli.profile.as_deref()).await?;
    eprintln!(
        "KMS endpoint: {}{} (Region {})",
        b.endpoint.url,
        if b.endpoint.overridden {
            " (from AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL)"
        } else {
            ""
        },
        b.region
    );
    Ok(b)
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializes"));
}

async fn run(cli: Cli) -> Result<(), BastionError> {
    match &cli.command {
        Command::Prepare(a) => {
            if a.keys.is_empty() && a.create.is_empty() {
                return Err(BastionError::Local(
                    "name keys with --key or create them with --create KEY_SPEC".into(),
                ));
            }
            if !["RSA_2048", "RSA_3072", "RSA_4096"].contains(&a.wrapping_key_spec.as_str()) {
                return Err(BastionError::Local(
                    "--wrapping-key-spec must be RSA_2048, RSA_3072 or RSA_4096".into(),
                ));
            }
            let b = connect(&cli).await?;
            std::fs::create_dir_all(&a.out_dir).map_err(|e| {
                BastionError::Local(format!("cannot create {}: {e}", a.out_dir.display()))
            })?;
            let mut keys = a.keys.clone();
            for spec in &a.create {
                let arn = prepare::create(
                    &b,
                    &CreateSpec {
                        key_spec: *spec,
                        description: a.description.clone(),
                        alias: None,
                    },
                )
                .await?;
                eprintln!("created EXTERNAL {spec} key {arn}");
                keys.push(arn);
            }
            let mut done = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(PACE).await;
                }
                let short = key.rsplit(['/', ':']).next().unwrap_or(key);
                let file = a.out_dir.join(format!("{short}.params.json"));
                let p =
                    prepare::prepare(&b, key, a.wrapping_algorithm, &a.wrapping_key_spec, &file)
                        .await?;
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
                let mut fp = [0u8; 32];
                hex::decode_to_slice(&p.wrapping_key_sha256, &mut fp)
                    .map_err(|e| BastionError::Local(e.to_string()))?;
                for line in Fingerprint(fp).grouped().lines() {
                    eprintln!("    {line}");
                }
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
            let policy = Policy::read(&a.policy)?;
            let verified = ceremony::verify(&a.dir, &policy)?;
            eprintln!(
                "verified ceremony {} signed by {} (policy: {} of {} custodians)",
                verified.ceremony_id(),
                verified.signers().join(", "),
                policy.threshold,
                policy.custodians.len()
            );
            import::check_bundle(&verified, &a.target, &a.params)?;
            let b = connect(&cli).await?;
            let opts = ImportOptions {
                params_file: a.params.clone(),
                expiration,
                new_key_material: a.new_key_material,
            };
            let (receipt, sent) = import::import(&b, &verified, &a.target, &opts).await?;
            if sent {
                eprintln!(
                    "imported into {} (KeyMaterialId {})",
                    receipt.key_arn,
                    receipt.key_material_id.as_deref().unwrap_or("not reported")
                );
            } else {
                eprintln!(
                    "already imported on {} (receipt {}); nothing sent",
                    receipt.imported_at,
                    import::receipt_path(&a.dir, &a.target).display()
                );
            }
            if cli.json {
                print_json(&receipt);
            }
        }
        Command::Status(a) => {
            let b = connect(&cli).await?;
            let report =
                byok_ceremony::bastion::status::status(&b, &a.keys, a.max_age_days).await?;
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
        Command::MoveAlias(a) => {
            let policy = Policy::read(&a.policy)?;
            let verified = ceremony::verify(&a.dir, &policy)?;
            let b = connect(&cli).await?;
            let m = byok_ceremony::bastion::alias::move_alias(&b, &verified, &a.target, &a.alias)
                .await?;
            eprintln!("PROVEN: {}", m.proof.method);
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
        Command::Retire(a) => {
            let b = connect(&cli).await?;
            let r = byok_ceremony::bastion::alias::retire(&b, &a.key, a.grace_days).await?;
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
            let b = connect(&cli).await?;
            let r = byok_ceremony::bastion::rotate::rotate(&b, &a.dir, &a.target).await?;
            eprintln!(
                "rotated {}: current key material {} (was {})",
                r.key_arn,
                r.after.as_deref().unwrap_or("?"),
                r.before.as_deref().unwrap_or("none")
            );
            if cli.json {
                print_json(&r);
            }
        }
        Command::Verify(a) => {
            let policy = Policy::read(&a.policy)?;
            let verified = ceremony::verify(&a.dir, &policy)?;
            let b = connect(&cli).await?;
            let proof = prove::prove(&b, &verified, &a.target).await?;
            eprintln!("PROVEN: {}: {}", proof.key_arn, proof.method);
            if cli.json {
                print_json(&proof);
            }
        }
    }
    Ok(())
}
