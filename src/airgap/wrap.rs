//! `byok-airgap wrap`: generate (or find) a key in the HSM and wrap it for
//! KMS import, inside the HSM, after a known-answer self-test.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;

use super::confirm::{ConfirmedBy, ConfirmedWrappingKey};
use super::Error;
use crate::bundle::manifest::{self, HsmKeyRecord, Manifest};
use crate::bundle::{output, AtomicDir};
use crate::ceremony::attest::OutputFile;
use crate::ceremony::transcript::{self as ts, Step, TranscriptWriter, FILE_NAME as TRANSCRIPT};
use crate::hsm::keygen::{self, HsmKey, KeyPolicy};
use crate::hsm::mechanisms::Mechanisms;
use crate::hsm::pin::PinSource;
use crate::hsm::selftest::{self, SelfTestPass};
use crate::hsm::wrap::{AesWrapPreference, WrappingKey};
use crate::hsm::{key_checks, wrap as hsm_wrap, Hsm, ModuleSpec, TokenSelector, UserSession};
use crate::kms::{check_combination, ImportParameters, KeySpec, WrappingAlgorithm};
use cryptoki::object::ObjectHandle;

/// Everything `wrap` needs.
#[derive(Clone, Debug)]
pub struct WrapRequest {
    /// The PKCS#11 module.
    pub module: ModuleSpec,
    /// The token.
    pub token: TokenSelector,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// The KMS key spec.
    pub key_spec: KeySpec,
    /// `CKA_LABEL` of the key.
    pub label: String,
    /// Wrap an existing key with this label instead of generating one.
    pub existing: bool,
    /// Generate with `CKA_WRAP_WITH_TRUSTED`.
    pub policy: KeyPolicy,
    /// Output directory (must not exist).
    pub out: PathBuf,
    /// Which RSA_AES_KEY_WRAP methods may be tried.
    pub aes_wrap: AesWrapPreference,
    /// Where the security officer's PIN comes from (with `policy.wrap_with_trusted`).
    pub so_pin: PinSource,
}

/// Resolve the wrapping algorithm from the command line and the file.
pub fn resolve_algorithm(
    given: Option<WrappingAlgorithm>,
    params: &ImportParameters,
) -> Result<WrappingAlgorithm, Error> {
    match (given, params.wrapping_algorithm) {
        (Some(g), Some(f)) if g != f => Err(Error::AlgorithmMismatch {
            given: g,
            in_file: f,
        }),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Err(Error::AlgorithmMissing),
    }
}

/// Check a label is something a custodian can read aloud and type.
pub(crate) fn check_label(label: &str) -> Result<(), Error> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Label(label.to_string()))
    }
}

/// Every check that needs no HSM: done before a session is opened.
pub fn preflight(
    req: &WrapRequest,
    params: &ImportParameters,
    algorithm: WrappingAlgorithm,
) -> Result<(), Error> {
    check_label(&req.label)?;
    if let Some(in_file) = params.key_spec {
        if in_file != req.key_spec {
            return Err(Error::KeySpecMismatch {
                given: req.key_spec,
                in_file,
            });
        }
    }
    check_combination(req.key_spec, algorithm, params.wrapping_key_bits)?;
    output::check_target(&req.out)?;
    Ok(())
}

/// Generate the key (refusing a taken label) or find the existing one.
pub(crate) fn obtain_key(
    session: &UserSession,
    spec: KeySpec,
    label: &str,
    existing: bool,
    policy: KeyPolicy,
) -> Result<HsmKey, Error> {
    Ok(if existing {
        keygen::find_existing(session, spec, label)?
    } else {
        keygen::generate(session, spec, label, policy)?
    })
}

/// A key wrapped for one KMS import: the blob and its manifest.
#[derive(Clone, Debug)]
pub struct Wrapped {
    /// `EncryptedKeyMaterial.bin`.
    pub blob: Vec<u8>,
    /// `manifest.json`.
    pub manifest: Manifest,
}

/// Wrap `key` for the KMS key of `params`, inside the HSM, after proving the
/// method with the known-answer self-test (`pass`, from `selftest::prove`
/// for this key spec, algorithm and wrapping key size); under `trusted`, the
/// security officer's trusted copy of `params`' wrapping key (see
/// [`crate::hsm::Hsm::login_trusting`]), when given.
pub(crate) fn wrap_for_target_with(
    session: &UserSession,
    key: &HsmKey,
    params: &ImportParameters,
    algorithm: WrappingAlgorithm,
    confirmed: &ConfirmedWrappingKey,
    pass: &SelfTestPass,
    trusted: Option<&WrappingKey>,
) -> Result<Wrapped, Error> {
    if key.wrap_with_trusted && trusted.is_none() {
        return Err(crate::hsm::HsmError::KeyUnsuitable {
            label: key.label.clone(),
            reason: "it has CKA_WRAP_WITH_TRUSTED, so only a wrapping key the security officer marked trusted can wrap it: run with --wrap-with-trusted and the SO PIN".into(),
        }
        .into());
    }
    if !confirmed.covers(params) {
        return Err(Error::FingerprintNotConfirmed);
    }
    check_combination(key.spec, algorithm, params.wrapping_key_bits)?;
    assert!(
        pass.key_spec == key.spec && pass.wrapping_algorithm == algorithm,
        "self-test result used for another key spec or algorithm"
    );
    let protection = keygen::protection(session, key.handle)?;
    let checks = key_checks::compute(session, key)?;
    let blob = {
        let imported;
        let wrapping = match trusted {
            Some(w) => w,
            None => {
                imported = WrappingKey::import(
                    session,
                    &params.public_key,
                    "byok-ceremony KMS wrapping key",
                )?;
                &imported
            }
        };
        hsm_wrap::wrap(session, pass.method, wrapping, key.handle)?
    };
    let facts = &session.hsm().facts;
    let now = time::OffsetDateTime::now_utc();
    let mut manifest = Manifest {
        format: manifest::FORMAT.into(),
        tool_version: crate::VERSION.into(),
        created_at: now.format(&Rfc3339).unwrap_or_default(),
        key_id: params.key_id.clone(),
        region: params.region.clone(),
        key_spec: key.spec,
        wrapping_algorithm: algorithm,
        wrapping_key_spec: format!("RSA_{}", params.wrapping_key_bits),
        wrapping_key_sha256: hex::encode(params.wrapping_key_sha256()),
        import_token_sha256: hex::encode(params.import_token_sha256()),
        import_parameters_sha256: hex::encode(params.file_sha256),
        parameters_valid_to: crate::kms::import_params::rfc3339(params.valid_to),
        encrypted_key_material_sha256: hex::encode(Sha256::digest(&blob)),
        encrypted_key_material_len: blob.len(),
        hsm_key: HsmKeyRecord {
            label: key.label.clone(),
            id_hex: hex::encode(&key.id),
            generated: key.generated,
            wrap_with_trusted: key.wrap_with_trusted,
            protection: Some(protection.into()),
        },
        token: facts.into(),
        wrap_method: pass.method.describe(),
        self_test: pass.checks.clone(),
        kcv: None,
        hmac_check: None,
        public_key: None,
    };
    manifest.set_checks(checks);
    Ok(Wrapped { blob, manifest })
}

/// The four files of a wrap's output (`docs/formats.md`), in order.
pub(crate) fn bundle_files(
    wrapped: &Wrapped,
    params: &ImportParameters,
    params_bytes: &[u8],
) -> [(&'static str, Vec<u8>); 4] {
    let mut json = serde_json::to_vec_pretty(&wrapped.manifest).expect("manifest serializes");
    json.push(b'\n');
    [
        (manifest::ENCRYPTED_KEY_MATERIAL, wrapped.blob.clone()),
        (manifest::IMPORT_TOKEN, params.import_token.clone()),
        (manifest::IMPORT_PARAMETERS, params_bytes.to_vec()),
        (manifest::MANIFEST, json),
    ]
}

/// Write a wrap's files into `out` (which must not exist), all or nothing:
/// the four files of `docs/formats.md` and a `transcript.jsonl` recording the
/// wrap, so that custodians can sign the directory (`ceremony sign`) and the
/// bastion can verify it.
pub(crate) fn write_output(
    out: &Path,
    wrapped: &Wrapped,
    params: &ImportParameters,
    params_bytes: &[u8],
    confirmed_by: ConfirmedBy,
) -> Result<PathBuf, Error> {
    let m = &wrapped.manifest;
    let files = bundle_files(wrapped, params, params_bytes);
    let mut dir = AtomicDir::create(out)?;
    for (name, bytes) in &files {
        dir.write(name, bytes)?;
    }
    let stamp = format!(
        "{}Z",
        m.created_at
            .split('.')
            .next()
            .unwrap_or_default()
            .trim_end_matches('Z')
            .replace([':', '-'], "")
    );
    let io = |e: std::io::Error| crate::bundle::OutputError::Io {
        path: out.join(TRANSCRIPT),
        source: e,
    };
    let mut t = TranscriptWriter::create(
        &dir.staged_path(TRANSCRIPT),
        Step::WrapStart(ts::WrapStart {
            ceremony_id: format!("wrap-{}-{}", m.hsm_key.label, stamp),
            purpose: "byok-airgap wrap: one key for one KMS key".into(),
            key_id: m.key_id.clone(),
            key_spec: m.key_spec,
            wrapping_algorithm: m.wrapping_algorithm,
            wrapping_key_spec: m.wrapping_key_spec.clone(),
            wrapping_key_sha256: m.wrapping_key_sha256.clone(),
            wrapping_key_confirmed_by: confirmed_by,
            import_parameters_sha256: m.import_parameters_sha256.clone(),
            import_token_sha256: m.import_token_sha256.clone(),
            parameters_valid_to: m.parameters_valid_to.clone(),
            tool_version: String::new(),
            tool_binary_sha256: String::new(),
        }),
    )
    .map_err(io)?;
    t.append(Step::Hsm(ts::HsmToken {
        token: m.token.clone(),
    }))
    .map_err(io)?;
    t.append(Step::SelfTest(ts::SelfTest {
        result: "pass".into(),
        method: m.wrap_method.clone(),
        checks: m.self_test.clone(),
    }))
    .map_err(io)?;
    t.append(key_record(m)).map_err(io)?;
    t.append(Step::Wrapped(ts::Wrapped::Single(ts::SingleWrapped {
        mechanism: m.wrap_method.clone(),
        encrypted_key_material_sha256: m.encrypted_key_material_sha256.clone(),
        encrypted_key_material_len: m.encrypted_key_material_len as u64,
        kcv: m.kcv.clone(),
        hmac_check: m.hmac_check.clone(),
        public_key: m.public_key.clone(),
    })))
    .map_err(io)?;
    let outputs = files
        .iter()
        .map(|(name, bytes)| OutputFile {
            path: name.to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
        })
        .collect();
    t.append(Step::Outputs(ts::Outputs { outputs }))
        .map_err(io)?;
    Ok(dir.commit()?)
}

/// The `key-generated` (or `key-found`) entry for the manifest's key, in the
/// one shape both `wrap` and `ceremony run` write.
fn key_record(m: &Manifest) -> Step {
    let record = ts::KeyRecord {
        label: m.hsm_key.label.clone(),
        id_hex: m.hsm_key.id_hex.clone(),
        key_spec: m.key_spec,
        protection: m.hsm_key.protection.as_ref().map(ts::Protection::from),
        checks: Some(key_checks::KeyChecks {
            kcv: m.kcv.clone(),
            hmac_check: m.hmac_check.clone(),
            public_key: m.public_key.clone(),
        }),
        adopted_after_interruption: Some(false),
        wrap_with_trusted: Some(m.hsm_key.wrap_with_trusted),
    };
    if m.hsm_key.generated {
        Step::KeyGenerated(record)
    } else {
        Step::KeyFound(record)
    }
}

/// Run the whole `wrap` command; `progress` receives one line per step.
pub fn run(
    req: &WrapRequest,
    params: &ImportParameters,
    params_bytes: &[u8],
    algorithm: WrappingAlgorithm,
    confirmed: &ConfirmedWrappingKey,
    progress: &mut dyn FnMut(&str),
) -> Result<Manifest, Error> {
    if !confirmed.covers(params) {
        return Err(Error::FingerprintNotConfirmed);
    }
    preflight(req, params, algorithm)?;

    let hsm = Hsm::open(&req.module, &req.token)?;
    progress(&format!(
        "token {:?} (serial {}, {} {}, firmware {})",
        hsm.facts.label,
        hsm.facts.serial,
        hsm.facts.manufacturer,
        hsm.facts.model,
        hsm.facts.firmware
    ));
    let test_public = selftest::test_rsa_key(params.wrapping_key_bits).to_public_key();
    let (session, trusted_handles) = login(req, &hsm, params, &test_public, progress)?;
    let trusted_kms = trusted_handles
        .first()
        .map(|h| WrappingKey::adopt(&session, *h, &params.public_key));
    // The self-test's trusted throwaway key: destroyed when the self-test ends
    // (prove_trusted consumes it), or on any earlier return.
    let trusted_test = trusted_handles
        .get(1)
        .map(|h| WrappingKey::adopt(&session, *h, &test_public));

    // Refuse a taken label before the self-test, so the custodian learns it first.
    if !req.existing {
        keygen::ensure_label_free(&session, &req.label)?;
    }
    let pass = self_test(req, &session, params, algorithm, trusted_test)?;
    progress(&format!("self-test passed: {}", pass.method.describe()));

    let key = obtain_key(&session, req.key_spec, &req.label, req.existing, req.policy)?;
    progress(&format!(
        "{} {} key {:?} (CKA_ID {})",
        if key.generated {
            "generated"
        } else {
            "found existing"
        },
        req.key_spec,
        key.label,
        hex::encode(&key.id)
    ));
    let wrapped = wrap_for_target_with(
        &session,
        &key,
        params,
        algorithm,
        confirmed,
        &pass,
        trusted_kms.as_ref(),
    )?;
    progress(&format!(
        "wrapped inside the HSM: {} bytes",
        wrapped.blob.len()
    ));
    let out = write_output(&req.out, &wrapped, params, params_bytes, confirmed.by)?;
    progress(&format!("wrote {}", out.display()));
    Ok(wrapped.manifest)
}

/// Log in with the user PIN; with `--wrap-with-trusted`, also have the
/// security officer mark the confirmed KMS wrapping key and the self-test's
/// throwaway key trusted for this session (their handles, in that order).
fn login<'h>(
    req: &WrapRequest,
    hsm: &'h Hsm,
    params: &ImportParameters,
    test_public: &rsa::RsaPublicKey,
    progress: &mut dyn FnMut(&str),
) -> Result<(UserSession<'h>, Vec<ObjectHandle>), Error> {
    let pin = req
        .pin
        .read(&format!("token {:?}", hsm.facts.label))
        .map_err(crate::hsm::HsmError::from)?;
    if !req.policy.wrap_with_trusted {
        return Ok((hsm.login(&pin)?, Vec::new()));
    }
    let so_pin = req
        .so_pin
        .read(&format!(
            "the security officer of token {:?}",
            hsm.facts.label
        ))
        .map_err(crate::hsm::HsmError::from)?;
    progress("security officer: marking the confirmed KMS wrapping key trusted for this session");
    Ok(hsm.login_trusting(
        &pin,
        &so_pin,
        &[
            (
                &params.public_key,
                "byok-ceremony KMS wrapping key (trusted)",
            ),
            (
                test_public,
                "byok-ceremony self-test KMS key (trusted, throwaway)",
            ),
        ],
    )?)
}

/// The known-answer self-test for this key spec, algorithm and wrapping-key
/// size, under the trusted throwaway key when there is one.
fn self_test(
    req: &WrapRequest,
    session: &UserSession,
    params: &ImportParameters,
    algorithm: WrappingAlgorithm,
    trusted_test: Option<WrappingKey>,
) -> Result<SelfTestPass, Error> {
    let mechanisms = Mechanisms::probe(session.hsm())?;
    let pass = match trusted_test {
        Some(test_key) => selftest::prove_trusted(
            session,
            &mechanisms,
            req.key_spec,
            algorithm,
            params.wrapping_key_bits,
            req.aes_wrap,
            test_key,
        )?,
        None => selftest::prove_with(
            session,
            &mechanisms,
            req.key_spec,
            algorithm,
            params.wrapping_key_bits,
            req.aes_wrap,
        )?,
    };
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceremony::transcript::{verify_file, Completion};

    /// Every check `wrap` makes before a session is opened, with its exact
    /// message, on the committed good-wrap parameters (HMAC_256's KMS key,
    /// RSA-2048, no algorithm recorded in the file).
    #[test]
    fn preflight_refusals_have_exact_messages() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ceremony/good-wrap");
        let bytes = std::fs::read(fixture.join(manifest::IMPORT_PARAMETERS)).unwrap();
        let params =
            ImportParameters::parse(&bytes, time::macros::datetime!(2026-12-01 23:05 UTC)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let request = |label: &str, key_spec: KeySpec, out: PathBuf| WrapRequest {
            module: ModuleSpec {
                path: "/nonexistent.so".into(),
                init_string: None,
            },
            token: TokenSelector::Only,
            pin: PinSource::Prompt,
            key_spec,
            label: label.into(),
            existing: false,
            policy: KeyPolicy::default(),
            out,
            aes_wrap: AesWrapPreference::Auto,
            so_pin: PinSource::Prompt,
        };
        let fresh = tmp.path().join("out");
        let oaep = WrappingAlgorithm::RsaesOaepSha1;
        let label_rule =
            "is not usable: use 1 to 64 characters of letters, digits, '-', '_', '.', ':' or '/'";
        let cases: Vec<(WrapRequest, WrappingAlgorithm, Option<String>)> = vec![
            (request("webhooks", KeySpec::Hmac256, fresh.clone()), oaep, None),
            (
                request("", KeySpec::Hmac256, fresh.clone()),
                oaep,
                Some(format!("label \"\" {label_rule}")),
            ),
            (
                request("a b", KeySpec::Hmac256, fresh.clone()),
                oaep,
                Some(format!("label \"a b\" {label_rule}")),
            ),
            (
                request(&"x".repeat(65), KeySpec::Hmac256, fresh.clone()),
                oaep,
                Some(format!("label {:?} {label_rule}", "x".repeat(65))),
            ),
            (
                request("webhooks", KeySpec::Hmac256, fresh.clone()),
                WrappingAlgorithm::RsaAesKeyWrapSha1,
                Some("KMS accepts HMAC_256 key material only with RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256, not RSA_AES_KEY_WRAP_SHA_1; request new import parameters with an RSAES_OAEP_* algorithm".into()),
            ),
            (
                request("webhooks", KeySpec::Hmac256, tmp.path().to_path_buf()),
                oaep,
                Some(format!("output directory {} already exists; refusing to overwrite it. Choose a new --out (each wrap gets its own directory)", tmp.path().display())),
            ),
        ];
        for (req, algorithm, want) in cases {
            let got = preflight(&req, &params, algorithm)
                .err()
                .map(|e| e.to_string());
            assert_eq!(got, want, "{:?}", req.label);
        }
        assert!(matches!(
            preflight(&request("", KeySpec::Hmac256, fresh), &params, oaep),
            Err(Error::Label(l)) if l.is_empty()
        ));
        // The file does not say which algorithm was requested.
        assert_eq!(resolve_algorithm(Some(oaep), &params).unwrap(), oaep);
        assert!(matches!(
            resolve_algorithm(None, &params),
            Err(Error::AlgorithmMissing)
        ));
    }

    /// `wrap`'s writer, fed the committed good-wrap fixture's files, writes a
    /// transcript that verifies, records every file, and has the one flat
    /// `key-generated` shape.
    #[test]
    fn the_wrap_transcript_is_typed_and_key_generated_is_flat() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ceremony/good-wrap");
        let read = |name: &str| std::fs::read(fixture.join(name)).unwrap();
        let manifest: Manifest = serde_json::from_slice(&read(manifest::MANIFEST)).unwrap();
        let params_bytes = read(manifest::IMPORT_PARAMETERS);
        let created = time::OffsetDateTime::parse(&manifest.created_at, &Rfc3339).unwrap();
        let params = ImportParameters::parse(&params_bytes, created).unwrap();
        let wrapped = Wrapped {
            blob: read(manifest::ENCRYPTED_KEY_MATERIAL),
            manifest,
        };
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        write_output(
            &out,
            &wrapped,
            &params,
            &params_bytes,
            ConfirmedBy::ExpectedValue,
        )
        .unwrap();
        let v = verify_file(&out.join(TRANSCRIPT)).unwrap();
        assert_eq!(v.completion(), Completion::Complete);
        let names: Vec<&str> = v.entries.iter().map(|e| e.step.name()).collect();
        assert_eq!(
            names,
            [
                "wrap-start",
                "hsm",
                "self-test",
                "key-generated",
                "wrapped",
                "outputs"
            ]
        );
        let Step::KeyGenerated(k) = &v.entries[3].step else {
            panic!("{:?}", v.entries[3].step)
        };
        assert_eq!(k.label, wrapped.manifest.hsm_key.label);
        assert_eq!(k.id_hex, wrapped.manifest.hsm_key.id_hex);
        assert!(k.checks.as_ref().is_some_and(|c| c.hmac_check.is_some()));
        let line = std::fs::read_to_string(out.join(TRANSCRIPT)).unwrap();
        let kg = line.lines().nth(3).unwrap();
        assert!(
            !kg.contains("hsm_key") && kg.contains(r#""label":"webhooks""#),
            "{kg}"
        );
        // The other lines are what the committed fixture holds, but for times.
        let strip = |l: &str| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["time", "prev_sha256"] {
                v[k] = serde_json::Value::Null;
            }
            v["data"]["tool_binary_sha256"] = serde_json::Value::Null;
            v
        };
        let fixture_lines = std::fs::read_to_string(fixture.join(TRANSCRIPT)).unwrap();
        for (i, (new, old)) in line.lines().zip(fixture_lines.lines()).enumerate() {
            if i != 3 {
                assert_eq!(strip(new), strip(old), "line {i}");
            }
        }
        let recorded: Vec<String> = v.entries[5]
            .step
            .outputs()
            .into_iter()
            .map(|o| o.path)
            .collect();
        assert_eq!(recorded.len(), 4);
    }
}
