//! `import`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use time::format_description::well_known::Rfc3339;

use super::output::{finish_batch, progress_line};
use super::{open_ceremony, Context};
use crate::bastion::batch;
use crate::bastion::errors::{BastionError, UsageError};
use crate::bastion::import::{self as lib, Expiration, ImportOptions, Imported};
use crate::bastion::prepare::RatePacer;
use crate::bastion::state::StateDir;
use crate::ceremony::VerifiedCeremony;

/// `byok-bastion import`.
#[derive(Args, Debug, Default)]
pub struct ImportArgs {
    /// The ceremony (or wrap) directory the custodians signed.
    pub dir: PathBuf,
    /// The bastion's own custodian policy.
    #[arg(long)]
    pub policy: PathBuf,
    /// The parameters file `prepare` wrote for this bundle (one bundle).
    #[arg(
        long,
        conflicts_with = "params_dir",
        required_unless_present = "params_dir"
    )]
    pub params: Option<PathBuf>,
    /// Where `prepare` wrote its parameters files: each bundle is matched by its import token.
    #[arg(long)]
    pub params_dir: Option<PathBuf>,
    /// Key material never expires.
    #[arg(long, conflicts_with = "valid_to")]
    pub no_expiry: bool,
    /// Key material expires at this UTC time (RFC 3339, at most 365 days ahead).
    #[arg(long)]
    pub valid_to: Option<String>,
    /// Import as NEW_KEY_MATERIAL (on-demand rotation of a symmetric key).
    #[arg(long)]
    pub new_key_material: bool,
    /// In a ceremony directory, the bundle LABEL/TARGET to import (default: every bundle).
    #[arg(long)]
    pub target: Option<String>,
    /// Bundles imported at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,
    /// ImportKeyMaterial calls per second per account and Region (KMS's quota:
    /// about 15); 0 for no pacing.
    #[arg(long, default_value_t = 10.0)]
    pub imports_per_second: f64,
}

impl ImportArgs {
    /// The expiration model asked for (KMS's default requires an expiry, so one must be chosen).
    pub fn expiration(&self) -> Result<Expiration, UsageError> {
        match (&self.valid_to, self.no_expiry) {
            (_, true) => Ok(Expiration::Never),
            (Some(t), false) => time::OffsetDateTime::parse(t, &Rfc3339)
                .map(Expiration::At)
                .map_err(|_| UsageError::ValidTo(t.clone())),
            (None, false) => Err(UsageError::ChooseExpiry),
        }
    }
}

/// `byok-bastion import`: verify first (nothing reaches KMS unless the
/// custodians signed it), then one bundle or the whole batch.
pub async fn import(ctx: &Context, a: &ImportArgs) -> Result<(), BastionError> {
    let expiration = a.expiration()?;
    let (verified, targets, state) = open_ceremony(ctx, &a.dir, &a.policy, a.target.as_deref())?;
    let opts = ImportOptions {
        params_file: PathBuf::new(),
        expiration,
        new_key_material: a.new_key_material,
        pace: Some(Arc::new(RatePacer::per_second(a.imports_per_second))),
    };
    if let Some(params) = &a.params {
        let [target] = targets.as_slice() else {
            return Err(UsageError::OneBundle {
                dir: a.dir.clone(),
                bundles: targets.len(),
            }
            .into());
        };
        let opts = ImportOptions {
            params_file: params.clone(),
            ..opts
        };
        return import_one(ctx, &state, &verified, target, &opts).await;
    }
    let params_dir = a.params_dir.as_deref().unwrap_or(Path::new("."));
    let plans = batch::plan_import(&state, &verified, &targets, params_dir)?;
    let left = plans.iter().filter(|p| p.receipt.is_none()).count();
    if left == 0 {
        eprintln!("all {} bundles checked; every one was imported before (receipts in {}), nothing to send", plans.len(), state.path().display());
    } else {
        eprintln!(
            "all {} bundles checked; importing {left} ({} at a time)",
            plans.len(),
            a.jobs.min(u16::try_from(left).unwrap_or(u16::MAX))
        );
    }
    let stop = batch::StopFlag::on_signals()?;
    let outcomes = batch::import_all(
        ctx.regions.clone(),
        Arc::new(state),
        Arc::new(verified),
        plans,
        opts,
        a.jobs.into(),
        &progress_line,
        &stop,
    )
    .await;
    finish_batch(ctx, "import", &outcomes)
}

async fn import_one(
    ctx: &Context,
    state: &StateDir,
    verified: &VerifiedCeremony,
    target: &str,
    opts: &ImportOptions,
) -> Result<(), BastionError> {
    let (_, _, p) = lib::check_bundle(state, verified, target, &opts.params_file)?;
    let b = ctx.regions.for_key(&p.key_id, p.region.as_deref()).await?;
    let (receipt, how) = lib::import(&b, state, verified, target, opts).await?;
    match how {
        Imported::Reconciled => eprintln!(
            "KMS already held this bundle's key in {} ({}); receipt written, nothing imported",
            receipt.key_arn, receipt.how
        ),
        Imported::Sent => eprintln!(
            "imported into {} (KeyMaterialId {})",
            receipt.key_arn,
            receipt.key_material_id.as_deref().unwrap_or("not reported")
        ),
        Imported::Recorded => eprintln!(
            "already imported on {} (receipt {}); nothing sent",
            receipt.imported_at,
            state
                .receipt_path(verified.transcript_digest(), target)
                .display()
        ),
    }
    ctx.json(&receipt);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_must_be_chosen_and_be_rfc_3339() {
        let mut a = ImportArgs::default();
        assert_eq!(
            a.expiration().unwrap_err().to_string(),
            "choose --no-expiry or --valid-to TIME (KMS's default model requires an expiry)"
        );
        a.valid_to = Some("tomorrow".into());
        assert_eq!(
            a.expiration().unwrap_err().to_string(),
            "--valid-to \"tomorrow\" is not an RFC 3339 time (like 2027-06-30T00:00:00Z)"
        );
        a.valid_to = Some("2027-06-30T00:00:00Z".into());
        assert!(matches!(a.expiration(), Ok(Expiration::At(_))));
        a.no_expiry = true;
        assert!(matches!(a.expiration(), Ok(Expiration::Never)));
    }
}
