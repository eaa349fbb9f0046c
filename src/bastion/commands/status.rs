//! `status`.

use std::sync::Arc;

use clap::Args;

use super::Context;
use crate::bastion::client::Bastion;
use crate::bastion::errors::BastionError;
use crate::bastion::status::{self as lib, KeyStatus};

/// `byok-bastion status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Keys to report (ID, ARN or alias; an ARN's Region is used).
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// Regions whose EXTERNAL keys to report when no --key is given
    /// (comma-separated or repeated; default: the configured Region).
    #[arg(long = "regions", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Maximum age of key material in days before rotation is due.
    #[arg(long, default_value_t = 365)]
    pub max_age_days: i64,
    /// Keys read at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,
}

/// `byok-bastion status`: exit code 3 when any key needs action.
pub async fn status(ctx: &Context, a: &StatusArgs) -> Result<(), BastionError> {
    let jobs = usize::from(a.jobs);
    let mut report = Vec::new();
    for (b, keys) in clients(ctx, a).await? {
        report.extend(lib::status(b, &keys, a.max_age_days, jobs).await?);
    }
    if ctx.json {
        super::output::print_json(&report);
    } else {
        print_table(&report);
    }
    let need = report.iter().filter(|k| k.verdict.needs_action()).count();
    if need > 0 {
        return Err(BastionError::OutOfPolicy(need));
    }
    Ok(())
}

/// The clients to ask, each with its keys (none: every EXTERNAL key of its
/// Region); named keys grouped by Region, in the order given within it.
async fn clients(
    ctx: &Context,
    a: &StatusArgs,
) -> Result<Vec<(Arc<Bastion>, Vec<String>)>, BastionError> {
    let mut out: Vec<(Arc<Bastion>, Vec<String>)> = Vec::new();
    if a.keys.is_empty() {
        if a.regions.is_empty() {
            out.push((ctx.regions.default_region().await?, Vec::new()));
        }
        for r in &a.regions {
            out.push((ctx.regions.region(r).await?, Vec::new()));
        }
        return Ok(out);
    }
    for key in &a.keys {
        let b = ctx.regions.for_key(key, None).await?;
        match out.iter_mut().find(|(c, _)| c.region == b.region) {
            Some((_, keys)) => keys.push(key.clone()),
            None => out.push((b, vec![key.clone()])),
        }
    }
    Ok(out)
}

fn print_table(report: &[KeyStatus]) {
    println!(
        "{:<14} {:<18} {:<14} {:>8} {:>8}  KEY / DETAIL",
        "VERDICT", "KEY SPEC", "STATE", "AGE(d)", "DUE(d)"
    );
    let days = |d: Option<i64>| d.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
    for k in report {
        let verdict = serde_json::to_value(k.verdict)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        println!(
            "{:<14} {:<18} {:<14} {:>8} {:>8}  {} {}\n{:>67}{}",
            verdict,
            k.key_spec,
            k.key_state,
            days(k.material_age_days),
            days(k.days_until_due),
            k.key_arn,
            k.aliases.join(","),
            "",
            k.detail
        );
    }
}
