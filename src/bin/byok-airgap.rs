//! `byok-airgap`: the offline half. Drives the HSM on the air-gapped
//! workstation; contains no network code.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use byok_ceremony::airgap::module::{self, LocalModule};
use byok_ceremony::airgap::prompt::{self, Confirmation, Prompt};
use byok_ceremony::airgap::{self, confirm, custodian, inspect, probe, wrap, Error};
use byok_ceremony::ceremony::Policy;
use byok_ceremony::fingerprint::Fingerprint;
use byok_ceremony::hsm::keygen::KeyPolicy;
use byok_ceremony::hsm::pin::PinSource;
use byok_ceremony::hsm::sign::CustodianKeyType;
use byok_ceremony::hsm::wrap::AesWrapPreference;
use byok_ceremony::hsm::{ModuleSpec, TokenSelector};
use byok_ceremony::kms::{KeySpec, WrappingAlgorithm};
use byok_ceremony::names::CustodianName;
use clap::{Args, Parser, Subcommand};

/// Generate key material inside an HSM and wrap it there for AWS KMS import.
#[derive(Parser)]
#[command(name = "byok-airgap", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate (or find) a key in the HSM and wrap it for KMS import.
    Wrap(WrapArgs),
    /// Run the known-answer self-test for every key spec and algorithm.
    Selftest(ProbeArgs),
    /// Show what this token can do for each KMS wrapping algorithm.
    Mechanisms(ProbeArgs),
    /// Show an import-parameters file: fingerprint, size, expiry.
    Inspect(InspectArgs),
    /// List the secret and private keys on the token (never their values).
    Keys(KeysArgs),
    /// Custodian signing keys.
    #[command(subcommand)]
    Custodian(CustodianCommand),
    /// Sign and verify ceremony directories.
    #[command(subcommand)]
    Ceremony(CeremonyCommand),
}

#[derive(Subcommand)]
enum CustodianCommand {
    /// Generate a custodian's signing key on their own token and print their policy entry.
    Init(CustodianInitArgs),
}

#[derive(Args)]
struct CustodianInitArgs {
    #[command(flatten)]
    hsm: HsmArgs,
    /// The custodian's name, as it will appear in the policy.
    #[arg(long)]
    name: CustodianName,
    /// CKA_LABEL of the signing key on the token.
    #[arg(long)]
    key_label: String,
    /// ec-p256, ec-p384 or rsa-3072.
    #[arg(long, default_value = "ec-p256")]
    key_type: CustodianKeyType,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CeremonyCommand {
    /// Check a ceremony file completely (no HSM) and print the plan and the custodian runbook.
    Plan(PlanArgs),
    /// Run a ceremony file on the HSM (resumes an interrupted run in the same --out).
    Run(RunArgs),
    /// Sign a ceremony directory as one custodian, with the key on their token.
    Sign(SignArgs),
    /// Verify a ceremony directory against a custodian policy (no HSM needed).
    Verify(VerifyArgs),
}

#[derive(Args)]
struct PlanArgs {
    /// The ceremony file.
    file: PathBuf,
    /// Also write the Markdown runbook here (refuses to overwrite).
    #[arg(long)]
    runbook: Option<PathBuf>,
    #[command(flatten)]
    module: ModuleArgs,
    /// Parameters must stay valid at least this many minutes.
    #[arg(long, default_value_t = 60)]
    min_remaining_minutes: i64,
}

#[derive(Args)]
struct RunArgs {
    /// The ceremony file.
    file: PathBuf,
    /// The output directory (created; an existing one from the same ceremony is resumed).
    #[arg(long)]
    out: PathBuf,
    /// Read the user PIN from this environment variable (default: prompt without echo).
    #[arg(long, value_name = "VAR", conflicts_with = "pin_file")]
    pin_env: Option<String>,
    /// Read the user PIN from the first line of this file.
    #[arg(long, value_name = "PATH")]
    pin_file: Option<PathBuf>,
    #[command(flatten)]
    module: ModuleArgs,
    /// Confirm the wrapping keys non-interactively with the parameters digest the bastion
    /// printed (`byok-bastion prepare --ceremony` or `byok-bastion params-digest`).
    #[arg(long, value_name = "HEX")]
    expect_parameters_digest: Option<String>,
    /// Skip typing the ceremony ID (recorded in the transcript). The parameters digest must
    /// then be given with --expect-parameters-digest.
    #[arg(long)]
    non_interactive: bool,
    #[command(flatten)]
    trusted: TrustedArgs,
    /// Parameters must stay valid at least this many minutes.
    #[arg(long, default_value_t = 60)]
    min_remaining_minutes: i64,
}

#[derive(Args)]
struct SignArgs {
    /// The ceremony (or wrap) output directory.
    dir: PathBuf,
    #[command(flatten)]
    hsm: HsmArgs,
    /// Your name in the custodian policy.
    #[arg(long)]
    custodian: CustodianName,
    /// CKA_LABEL of your signing key on your token.
    #[arg(long)]
    key_label: String,
    /// Sign without the interactive confirmation; recorded in the attestation.
    #[arg(long)]
    yes: bool,
    /// Sign a run that has not finished (no closing transcript entry); recorded
    /// in the attestation as `partial`.
    #[arg(long)]
    partial: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// The ceremony (or wrap) output directory.
    dir: PathBuf,
    /// The custodian policy (your own copy, never one from the bundle).
    #[arg(long)]
    policy: PathBuf,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct KeysArgs {
    #[command(flatten)]
    hsm: HsmArgs,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct HsmArgs {
    #[command(flatten)]
    module: ModuleArgs,
    /// Label of the token to use.
    #[arg(long, conflicts_with = "slot")]
    token_label: Option<String>,
    /// Slot ID of the token to use.
    #[arg(long)]
    slot: Option<u64>,
    /// Read the user PIN from this environment variable (default: prompt without echo).
    #[arg(long, value_name = "VAR", conflicts_with = "pin_file")]
    pin_env: Option<String>,
    /// Read the user PIN from the first line of this file.
    #[arg(long, value_name = "PATH")]
    pin_file: Option<PathBuf>,
}

/// Where the PKCS#11 module comes from: this workstation, never the media.
#[derive(Args, Clone)]
struct ModuleArgs {
    /// PKCS#11 module (shared library) of the HSM. Default: $BYOK_PKCS11_MODULE, then
    /// /etc/byok-ceremony/hsm.json (root-owned), then /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// String passed to C_Initialize as pReserved (NSS softoken needs its configuration here).
    #[arg(long, value_name = "STRING")]
    module_init_string: Option<String>,
}

impl ModuleArgs {
    fn resolve(&self) -> Result<LocalModule, Error> {
        Ok(module::resolve(
            self.module.as_deref(),
            self.module_init_string.as_deref(),
        )?)
    }
}

impl HsmArgs {
    fn module(&self) -> Result<ModuleSpec, Error> {
        Ok(self.module.resolve()?.spec)
    }
    fn token(&self) -> TokenSelector {
        TokenSelector::from_options(self.token_label.as_deref(), self.slot)
    }
    fn pin(&self) -> PinSource {
        PinSource::from_options(self.pin_env.as_deref(), self.pin_file.as_deref())
    }
}

/// Trusted wrapping (`wrap` and `ceremony run`).
#[derive(Args, Clone)]
struct TrustedArgs {
    /// Generate keys with CKA_WRAP_WITH_TRUSTED, and have the security officer mark the
    /// confirmed KMS wrapping keys trusted for this session (needed to wrap such keys).
    #[arg(long)]
    wrap_with_trusted: bool,
    /// Read the security officer PIN from this environment variable (default: prompt without echo).
    #[arg(
        long,
        value_name = "VAR",
        conflicts_with = "so_pin_file",
        requires = "wrap_with_trusted"
    )]
    so_pin_env: Option<String>,
    /// Read the security officer PIN from the first line of this file.
    #[arg(long, value_name = "PATH", requires = "wrap_with_trusted")]
    so_pin_file: Option<PathBuf>,
}

impl TrustedArgs {
    /// The security officer's PIN source, when trusted wrapping was asked for.
    fn so_pin(&self) -> Option<PinSource> {
        self.wrap_with_trusted.then(|| {
            PinSource::from_options(self.so_pin_env.as_deref(), self.so_pin_file.as_deref())
        })
    }
}

#[derive(Args)]
struct WrapArgs {
    #[command(flatten)]
    hsm: HsmArgs,
    /// Import-parameters JSON (from `aws kms get-parameters-for-import` or byok-bastion).
    #[arg(long, value_name = "FILE")]
    params: PathBuf,
    /// The wrapping algorithm given to get-parameters-for-import.
    #[arg(long, value_name = "ALG")]
    wrapping_algorithm: Option<WrappingAlgorithm>,
    /// KMS key spec of the key material.
    #[arg(long, value_name = "SPEC")]
    key_spec: KeySpec,
    /// CKA_LABEL of the key in the HSM.
    #[arg(long)]
    label: String,
    /// Wrap the existing HSM key with this label instead of generating one.
    #[arg(long)]
    existing: bool,
    /// Confirm the wrapping key non-interactively with the fingerprint the bastion printed.
    #[arg(long, value_name = "HEX")]
    expect_wrapping_key_sha256: Option<String>,
    #[command(flatten)]
    trusted: TrustedArgs,
    /// Output directory to create (must not exist).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// RSA_AES_KEY_WRAP_* methods to try: auto (native, then KWP, then PAD), kwp or pad.
    #[arg(long, value_name = "auto|kwp|pad", default_value = "auto")]
    aes_key_wrap: AesWrapPreference,
    /// Print the manifest as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ProbeArgs {
    #[command(flatten)]
    hsm: HsmArgs,
    /// Only this key spec (repeatable).
    #[arg(long = "key-spec", value_name = "SPEC")]
    key_specs: Vec<KeySpec>,
    /// Only this wrapping algorithm (repeatable).
    #[arg(long = "wrapping-algorithm", value_name = "ALG")]
    algorithms: Vec<WrappingAlgorithm>,
    /// RSA_AES_KEY_WRAP_* methods to try: auto (native, then KWP, then PAD), kwp or pad.
    #[arg(long, value_name = "auto|kwp|pad", default_value = "auto")]
    aes_key_wrap: AesWrapPreference,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// Import-parameters JSON.
    #[arg(long, value_name = "FILE")]
    params: PathBuf,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Wrap(a) => cmd_wrap(a),
        Command::Selftest(a) => cmd_probe(a, false),
        Command::Mechanisms(a) => cmd_probe(a, true),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Keys(a) => cmd_keys(a),
        Command::Custodian(CustodianCommand::Init(a)) => cmd_custodian_init(a),
        Command::Ceremony(CeremonyCommand::Plan(a)) => cmd_plan(a),
        Command::Ceremony(CeremonyCommand::Run(a)) => cmd_run(a),
        Command::Ceremony(CeremonyCommand::Sign(a)) => cmd_sign(a),
        Command::Ceremony(CeremonyCommand::Verify(a)) => cmd_verify(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn note(line: &str) {
    eprintln!("  {line}");
}

fn cmd_wrap(a: WrapArgs) -> Result<ExitCode, Error> {
    let (params, bytes) = airgap::read_params(&a.params)?;
    let algorithm = wrap::resolve_algorithm(a.wrapping_algorithm, &params)?;
    let req = wrap::WrapRequest {
        module: a.hsm.module()?,
        token: a.hsm.token(),
        pin: a.hsm.pin(),
        key_spec: a.key_spec,
        label: a.label.clone(),
        existing: a.existing,
        policy: KeyPolicy {
            wrap_with_trusted: a.trusted.wrap_with_trusted,
        },
        out: a.out.clone(),
        aes_wrap: a.aes_key_wrap,
        so_pin: a.trusted.so_pin().unwrap_or(PinSource::Prompt),
    };
    wrap::preflight(&req, &params, algorithm)?;
    show_wrapping_key(&params, algorithm, a.key_spec);
    let how = prompt::WrapConfirmation {
        expect_wrapping_key_sha256: a.expect_wrapping_key_sha256.clone(),
        terminal: std::io::stdin().is_terminal(),
    }
    .validate()?;
    let confirmed = match how {
        Confirmation::Expected(expected) => confirm::with_expected(&params, &expected)?,
        Confirmation::TypedBack => Prompt::terminal().type_back(
            "Type the fingerprint shown on the bastion to confirm: ",
            Error::FingerprintNotConfirmed,
            |typed| confirm::with_typed(&params, typed),
        )?,
    };
    eprintln!("Fingerprint confirmed.");
    let manifest = wrap::run(&req, &params, &bytes, algorithm, &confirmed, &mut |l| {
        note(l)
    })?;
    print_wrapped(&manifest, &a.out, a.json);
    Ok(ExitCode::SUCCESS)
}

/// What the custodians compare before confirming: the KMS key, the
/// wrapping key's size and expiry, and its fingerprint to read aloud.
fn show_wrapping_key(
    params: &byok_ceremony::kms::ImportParameters,
    algorithm: byok_ceremony::kms::WrappingAlgorithm,
    key_spec: byok_ceremony::kms::KeySpec,
) {
    let now = time::OffsetDateTime::now_utc();
    eprintln!("KMS key:        {}", params.key_id);
    eprintln!(
        "Wrapping key:   RSA-{}, valid until {} ({} min left)",
        params.wrapping_key_bits,
        byok_ceremony::kms::rfc3339(params.valid_to),
        params.remaining(now).whole_minutes()
    );
    eprintln!("Algorithm:      {algorithm}   Key spec: {key_spec}");
    if let Some(w) = params.validity_warning(now) {
        eprintln!("warning: {w}");
    }
    eprintln!("Wrapping key SHA-256 (read this aloud and compare with the bastion):");
    for line in Fingerprint(params.wrapping_key_sha256()).grouped().lines() {
        eprintln!("    {line}");
    }
}

/// The wrapped bundle: the manifest as JSON, or its check values for people.
fn print_wrapped(manifest: &byok_ceremony::bundle::Manifest, out: &std::path::Path, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(manifest).expect("manifest serializes")
        );
        return;
    }
    println!(
        "Wrapped {} key {:?} for {}",
        manifest.key_spec, manifest.hsm_key.label, manifest.key_id
    );
    println!("  output:           {}", out.display());
    if let Some(kcv) = &manifest.kcv {
        println!("  key check value:  {kcv}");
    }
    if let Some(h) = &manifest.hmac_check {
        println!("  {} check:  {}", h.mac_algorithm, h.mac_hex);
    }
    if let Some(pk) = &manifest.public_key {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(pk)
            .unwrap_or_default();
        println!("  public key SHA-256: {}", Fingerprint::of(&der).hex());
    }
    println!("Next: copy {} to the bastion and import it.", out.display());
}

fn cmd_probe(a: ProbeArgs, show_mechanisms: bool) -> Result<ExitCode, Error> {
    let specs = if a.key_specs.is_empty() {
        probe::default_specs()
    } else {
        a.key_specs.clone()
    };
    let algs = if a.algorithms.is_empty() {
        WrappingAlgorithm::ALL.to_vec()
    } else {
        a.algorithms.clone()
    };
    let report = probe::probe(
        &a.hsm.module()?,
        &a.hsm.token(),
        &a.hsm.pin(),
        &specs,
        &algs,
        a.aes_key_wrap,
        // The table printed at the end says it all.
        &mut |_| {},
    )?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        let t = &report.token;
        println!(
            "Token {:?} serial {} ({} {}, firmware {}; {})",
            t.label, t.serial, t.manufacturer, t.model, t.firmware, t.library
        );
        if show_mechanisms {
            println!("Wrapping mechanisms listed by the token:");
            for (name, ok) in &report.mechanisms {
                println!("  {:<40} {}", name, if *ok { "yes" } else { "no" });
            }
            println!("Key attributes generated keys ask for (throwaway session key):");
            match &report.attribute_promises {
                Ok(p) => {
                    let word = |b: bool| if b { "honoured" } else { "NOT honoured" };
                    println!("  {:<40} {}", "CKA_MODIFIABLE=false", word(p.unmodifiable));
                    println!("  {:<40} {}", "CKA_COPYABLE=false", word(p.uncopyable));
                    for line in &p.observed {
                        println!("    {line}");
                    }
                }
                Err(e) => println!("  could not be checked: {e}"),
            }
        }
        println!("Self-test (known answer, throwaway keys):");
        for r in &report.rows {
            println!(
                "  {:<17} {:<25} {:<12} {}",
                r.key_spec.as_str(),
                r.wrapping_algorithm.as_str(),
                r.result,
                r.detail
            );
        }
    }
    // `selftest` with explicit key specs and algorithms is a gate: all must pass.
    // `mechanisms` is a report and always succeeds.
    let explicit = !a.key_specs.is_empty() && !a.algorithms.is_empty();
    let failed = report.rows.iter().any(|r| r.result != "pass");
    Ok(if !show_mechanisms && explicit && failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_custodian_init(a: CustodianInitArgs) -> Result<ExitCode, Error> {
    let c = custodian::init(
        &a.hsm.module()?,
        &a.hsm.token(),
        &a.hsm.pin(),
        &a.name,
        &a.key_label,
        a.key_type,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c).expect("serializes"));
    } else {
        println!(
            "Custodian signing key {:?} created on the token for {}.",
            a.key_label, a.name
        );
        println!("Key ID (SHA-256 of the public key), to read aloud when the policy is assembled:");
        for line in Fingerprint(hex_array(&c.keyid)).grouped().lines() {
            println!("    {line}");
        }
        println!("Add this entry to the custodian policy's \"custodians\" list:");
        println!(
            "{}",
            serde_json::to_string_pretty(&c.entry).expect("serializes")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn check_ceremony(
    file: &std::path::Path,
    minutes: i64,
) -> Result<byok_ceremony::ceremony::file::CheckedCeremony, Error> {
    Ok(byok_ceremony::ceremony::file::check(
        file,
        time::OffsetDateTime::now_utc(),
        time::Duration::minutes(minutes),
    )?)
}

/// The ceremony and the module this workstation will use, checked against
/// each other before anything is loaded.
fn ceremony_and_module(
    file: &std::path::Path,
    minutes: i64,
    module: &ModuleArgs,
) -> Result<(byok_ceremony::ceremony::file::CheckedCeremony, LocalModule), Error> {
    let c = check_ceremony(file, minutes)?;
    let local = module.resolve()?;
    local.check_expected(&c.file.expected_module())?;
    Ok((c, local))
}

fn cmd_plan(a: PlanArgs) -> Result<ExitCode, Error> {
    let (c, local) = ceremony_and_module(&a.file, a.min_remaining_minutes, &a.module)?;
    eprintln!(
        "HSM module: {} (from {}), token {:?}",
        local.spec.path.display(),
        local.origin,
        c.file.hsm.token_label
    );
    let book = byok_ceremony::ceremony::file::runbook(&c, &local);
    if let Some(path) = &a.runbook {
        byok_ceremony::bundle::output::write_new_file(path, book.as_bytes())?;
        eprintln!("runbook written to {}", path.display());
    }
    println!("{book}");
    Ok(ExitCode::SUCCESS)
}

fn cmd_run(a: RunArgs) -> Result<ExitCode, Error> {
    let (c, local) = ceremony_and_module(&a.file, a.min_remaining_minutes, &a.module)?;
    let pin = PinSource::from_options(a.pin_env.as_deref(), a.pin_file.as_deref());
    let how = prompt::RunConfirmation {
        non_interactive: a.non_interactive,
        expect_parameters_digest: a.expect_parameters_digest.clone(),
        terminal: std::io::stdin().is_terminal(),
    }
    .validate()?;
    eprintln!(
        "HSM module: {} (from {}), token {:?}",
        local.spec.path.display(),
        local.origin,
        c.file.hsm.token_label
    );
    eprintln!(
        "Parameters digest of the files on this media (every wrapping key and import token):"
    );
    for line in c.parameters_digest.grouped().lines() {
        eprintln!("    {line}");
    }
    let parameters = match how {
        Confirmation::Expected(expected) => confirm::parameters_with_expected(&c, &expected)?,
        Confirmation::TypedBack => Prompt::terminal().type_back(
            "Type the parameters digest shown on the bastion (not this screen) to confirm: ",
            Error::ParametersNotConfirmed,
            |typed| confirm::parameters_with_typed(&c, typed),
        )?,
    };
    eprintln!("Parameters digest confirmed.");
    let opts = byok_ceremony::ceremony::run::RunOptions {
        pin,
        module: local,
        non_interactive: a.non_interactive,
        parameters,
        trusted: a.trusted.so_pin(),
    };
    let id = c.file.ceremony_id.to_string();
    let summary = byok_ceremony::ceremony::run::run(
        &c,
        &a.out,
        &opts,
        &mut |plan| {
            eprintln!("About to run {plan}.");
            Prompt::terminal().type_exactly(&format!("Type the ceremony ID ({id}) to begin: "), &id)
        },
        &mut |l| note(l),
    )?;
    println!(
        "Ceremony {} {}: {} wrapped, {} already done; transcript digest {}",
        id,
        if summary.resumed {
            "resumed and finished"
        } else {
            "finished"
        },
        summary.wrapped.len(),
        summary.skipped.len(),
        summary.transcript_sha256
    );
    println!(
        "Next: each custodian signs with `byok-airgap ceremony sign {}`.",
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_sign(a: SignArgs) -> Result<ExitCode, Error> {
    let rules = prompt::SignConfirmation {
        yes: a.yes,
        terminal: std::io::stdin().is_terminal(),
    };
    let interactive = rules.validate()?;
    let payload = custodian::prepare(&a.dir, &a.custodian, rules.recorded(), a.partial)?;
    eprintln!("Ceremony:          {}", payload.ceremony_id);
    if payload.partial {
        eprintln!("PARTIAL:           the run has not finished; this attestation says so");
    } else if a.partial {
        eprintln!("note: the run has finished; --partial changes nothing");
    }
    eprintln!("Custodian:         {}", payload.custodian);
    eprintln!(
        "Transcript:        {} entries, digest",
        payload.transcript_entries
    );
    for line in Fingerprint(hex_array(&payload.transcript_sha256))
        .grouped()
        .lines()
    {
        eprintln!("    {line}");
    }
    let keys = custodian::wrapping_keys(&a.dir)?;
    if let Some(d) = &keys.parameters_digest {
        eprintln!("Parameters digest confirmed at the run (compare with the bastion's):");
        for line in Fingerprint(hex_array(d)).grouped().lines() {
            eprintln!("    {line}");
        }
    }
    eprintln!("Wrapped for:");
    for (bundle, key, fp) in &keys.wraps {
        eprintln!("    {bundle}  {key}  wrapping key SHA-256 {fp}");
    }
    eprintln!("Outputs:");
    for o in &payload.outputs {
        eprintln!("    {}  {}", &o.sha256[..16], o.path);
    }
    let question = format!(
        "Type 'sign' to sign this ceremony as {}: ",
        payload.custodian
    );
    if interactive && !Prompt::terminal().type_exactly(&question, "sign") {
        return Err(Error::NotConfirmed);
    }
    let path = custodian::sign(
        &a.hsm.module()?,
        &a.hsm.token(),
        &a.hsm.pin(),
        &a.dir,
        &payload,
        &a.key_label,
    )?;
    println!("Signed: {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn hex_array(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(v) = hex::decode(h) {
        if v.len() == 32 {
            out.copy_from_slice(&v);
        }
    }
    out
}

fn cmd_verify(a: VerifyArgs) -> Result<ExitCode, Error> {
    let policy = Policy::read(&a.policy)?;
    let v = byok_ceremony::ceremony::verify(&a.dir, &policy)?;
    if a.json {
        let out = serde_json::json!({
            "verified": true,
            "ceremony_id": v.ceremony_id(),
            "transcript_sha256": v.transcript_digest(),
            "transcript_entries": v.entries().len(),
            "signers": v.signers(),
            "complete": v.is_complete(),
            "threshold": policy.threshold,
            "outputs": v.outputs(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializes")
        );
    } else {
        println!("VERIFIED: ceremony {}", v.ceremony_id());
        if !v.is_complete() {
            println!("  PARTIAL:    the transcript does not record a finished run; every signer signed it with --partial");
        }
        println!(
            "  transcript: {} entries, chain intact, digest {}",
            v.entries().len(),
            v.transcript_digest()
        );
        println!(
            "  outputs:    {} files, every hash matches the transcript",
            v.outputs().len()
        );
        println!(
            "  signed by:  {} (policy: {} of {} custodians)",
            v.signers().join(", "),
            policy.threshold,
            policy.custodians.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_keys(a: KeysArgs) -> Result<ExitCode, Error> {
    let (token, keys) = airgap::keys::list(&a.hsm.module()?, &a.hsm.token(), &a.hsm.pin())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&keys).expect("listing serializes")
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Token {:?} serial {}: {} keys",
        token.label,
        token.serial,
        keys.len()
    );
    for k in &keys {
        let mut flags = Vec::new();
        if !k.sensitive {
            flags.push("NOT SENSITIVE");
        }
        if !k.extractable {
            flags.push("not extractable");
        }
        if k.wrap_with_trusted {
            flags.push("wrap-with-trusted");
        }
        println!(
            "  {:<32} {:<17} CKA_ID {}  {}",
            k.label,
            k.key_spec.map(|s| s.as_str()).unwrap_or("(not a KMS spec)"),
            k.id_hex,
            flags.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_inspect(a: InspectArgs) -> Result<ExitCode, Error> {
    let (params, _) = airgap::read_params(&a.params)?;
    let s = inspect::summarize(&params);
    if let Some(w) = params.validity_warning(time::OffsetDateTime::now_utc()) {
        eprintln!("warning: {w}");
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).expect("summary serializes")
        );
    } else {
        println!("KMS key:            {}", s.key_id);
        println!("Wrapping key:       {}", s.wrapping_key_spec);
        println!("Wrapping key SHA-256:");
        for line in s.wrapping_key_sha256_grouped.lines() {
            println!("    {line}");
        }
        println!(
            "Import token:       {} bytes, SHA-256 {}",
            s.import_token_len, s.import_token_sha256
        );
        println!(
            "Valid until:        {} ({} min left)",
            s.valid_to, s.minutes_left
        );
        if let Some(k) = &s.key_spec {
            println!("Key spec:           {k}");
        }
        if let Some(w) = &s.wrapping_algorithm {
            println!("Wrapping algorithm: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
