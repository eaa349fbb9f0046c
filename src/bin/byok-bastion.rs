//! `byok-bastion`: the online half. Prepares import parameters, uploads only
//! ceremony directories that verify against the bastion's own custodian
//! policy, and proves KMS holds the HSM's key. This file only parses the
//! command line and dispatches: the commands live in
//! `byok_ceremony::bastion::commands`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use byok_ceremony::bastion::commands::{self, Context};
use byok_ceremony::bastion::regions::Regions;
use byok_ceremony::bastion::{Bastion, BastionError};
use clap::{Parser, Subcommand};

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
    Prepare(commands::PrepareArgs),
    /// Import a ceremony directory that verifies against your custodian policy.
    Import(commands::ImportArgs),
    /// Prove KMS holds the HSM's key (GenerateMac, GetPublicKey, or a round trip).
    Verify(commands::VerifyArgs),
    /// Make NEW_KEY_MATERIAL imported from this bundle current (RotateKeyOnDemand) and confirm it.
    Rotate(commands::RotateArgs),
    /// Which imported keys are out of rotation policy (exit code 3 if any needs action).
    Status(commands::StatusArgs),
    /// Alias rotation: prove the bundle's key holds the HSM's key, then point the alias at it.
    MoveAlias(commands::MoveAliasArgs),
    /// Disable an old key and schedule its deletion after a grace period (no alias may point to it).
    Retire(commands::RetireArgs),
    /// The parameters digest of a ceremony file, from parameters this bastion fetched (no KMS call).
    ParamsDigest(commands::ParamsDigestArgs),
    /// Which S3 buckets, DynamoDB tables and RDS databases are not on compliant keys (exit code 3 if any).
    Audit(byok_ceremony::bastion::audit::AuditArgs),
    /// Print the least-privilege IAM policy of a role (or key-policy statements); no AWS call.
    IamPolicy(byok_ceremony::bastion::iam::IamPolicyArgs),
    /// Move S3 buckets and DynamoDB tables off replaced keys (dry run unless --apply); RDS: print the procedure.
    Repoint(byok_ceremony::bastion::repoint::RepointArgs),
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

async fn run(cli: Cli) -> Result<(), BastionError> {
    let ctx = Context {
        regions: regions(&cli),
        state_dir: cli.state_dir.clone(),
        json: cli.json,
        profile: cli.profile.clone(),
    };
    match &cli.command {
        Command::Prepare(a) => commands::prepare(&ctx, a).await,
        Command::Import(a) => commands::import(&ctx, a).await,
        Command::Verify(a) => commands::verify(&ctx, a).await,
        Command::Rotate(a) => commands::rotate(&ctx, a).await,
        Command::Status(a) => commands::status(&ctx, a).await,
        Command::MoveAlias(a) => commands::move_alias(&ctx, a).await,
        Command::Retire(a) => commands::retire(&ctx, a).await,
        Command::ParamsDigest(a) => commands::params_digest(&ctx, a),
        Command::IamPolicy(a) => Ok(byok_ceremony::bastion::iam::main(a)?),
        Command::Repoint(a) => {
            byok_ceremony::bastion::repoint::main(
                a,
                ctx.regions.clone(),
                ctx.profile.as_deref(),
                &ctx.state()?,
                ctx.json,
            )
            .await
        }
        Command::Audit(a) => {
            byok_ceremony::bastion::audit::main(
                a,
                ctx.regions.clone(),
                ctx.profile.as_deref(),
                ctx.json,
            )
            .await
        }
    }
}
