//! What the commands print: JSON, fingerprints to read aloud, progress lines
//! and batch summaries.

use super::super::batch::{Outcome, Summary};
use super::super::client::account_of;
use super::super::errors::BastionError;
use super::super::prepare::Prepared;
use super::Context;
use crate::fingerprint::Fingerprint;

/// Pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializes"));
}

/// Show the parameters digest for the custodians (stderr: it is for people).
pub fn print_parameters_digest(digest: &Fingerprint) {
    eprintln!("Parameters digest (print it or write it down here; it must not travel on the media; the custodians type it at `byok-airgap ceremony run`):");
    for line in digest.grouped().lines() {
        eprintln!("    {line}");
    }
}

/// A prepared key: its ARN, parameters file and wrapping-key fingerprint to read aloud.
pub fn print_prepared(p: &Prepared) {
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
    match hex::decode_to_slice(&p.wrapping_key_sha256, &mut fp) {
        Ok(()) => {
            for line in Fingerprint(fp).grouped().lines() {
                eprintln!("    {line}");
            }
        }
        Err(_) => eprintln!("    {}", p.wrapping_key_sha256),
    }
}

/// `[3/6] webhooks/eu-west-1: imported arn:… (KeyMaterialId …)`
pub fn progress_line(done: usize, total: usize, o: &Outcome) {
    let status = serde_json::to_value(&o.status)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default();
    let target = if o.target.is_empty() {
        "bundle"
    } else {
        &o.target
    };
    let material = o
        .key_material_id
        .as_deref()
        .map(|k| format!(" (KeyMaterialId {k})"))
        .unwrap_or_default();
    let detail = if o.detail.is_empty() {
        String::new()
    } else {
        format!("\n      {}", o.detail)
    };
    eprintln!(
        "[{done}/{total}] {target}: {status} {}{material}{detail}",
        o.key_arn.as_deref().unwrap_or("")
    );
}

/// Print a batch's summary (and JSON), and fail if any bundle failed, was
/// left, or is not proven.
pub fn finish_batch(ctx: &Context, what: &str, outcomes: &[Outcome]) -> Result<(), BastionError> {
    let summary = Summary::of(outcomes);
    eprintln!("{what}: {}", summary.line());
    ctx.json(&serde_json::json!({ "summary": summary, "bundles": outcomes }));
    if summary.left() > 0 {
        return Err(BastionError::Interrupted {
            done: summary.total - summary.left(),
            left: summary.left(),
        });
    }
    if summary.failed() > 0 {
        return Err(BastionError::BatchFailed(summary.failed()));
    }
    if summary.not_proven() > 0 {
        return Err(BastionError::BatchNotProven(summary.not_proven()));
    }
    Ok(())
}

/// Say once that receipts next to the bundles (from the media or an older
/// version) are not read.
pub fn note_receipts_on_media(dir: &std::path::Path) {
    let found = super::super::state::receipts_next_to(dir);
    if !found.is_empty() {
        eprintln!(
            "note: ignoring {} receipt file(s) next to {} (e.g. {}): only receipts in the bastion's own state directory count",
            found.len(),
            dir.display(),
            found[0].display()
        );
    }
}
