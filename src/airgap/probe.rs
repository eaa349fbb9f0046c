//! `byok-airgap mechanisms` and `byok-airgap selftest`: what this token can do
//! for each KMS wrapping algorithm, proven by the known-answer self-test.

use serde::Serialize;

use super::Error;
use crate::hsm::keygen;
use crate::hsm::mechanisms::{self, Mechanisms, CKF_WRAP};
use crate::hsm::pin::PinSource;
use crate::hsm::wrap::{AesWrapPreference, WrapMethod};
use crate::hsm::{selftest, Hsm, HsmError, ModuleSpec, TokenFacts, TokenSelector};
use crate::kms::key_spec::{oaep_payload_limit, KeyFamily};
use crate::kms::{check_combination, KeySpec, WrappingAlgorithm};

/// The `format` of `byok-airgap mechanisms --json` and `selftest --json`
/// output (docs/formats.md). Fields are only ever added under this name.
pub const PROBE_FORMAT: &str = "byok-ceremony/mechanisms/v1";

/// One key spec × algorithm result.
#[derive(Debug, Serialize)]
pub struct ProbeRow {
    /// Key spec.
    pub key_spec: KeySpec,
    /// Algorithm.
    pub wrapping_algorithm: WrappingAlgorithm,
    /// The size of the throwaway wrapping key the self-test used.
    pub wrapping_key_bits: usize,
    /// `pass`, `unsupported` (token cannot), or `kms-forbids`.
    pub result: &'static str,
    /// The method proven (`pass` only), machine-readable.
    pub method: Option<WrapMethod>,
    /// Method proven, or the reason.
    pub detail: String,
}

/// The whole probe.
#[derive(Debug, Serialize)]
pub struct ProbeReport {
    /// Always [`PROBE_FORMAT`].
    pub format: &'static str,
    /// The token.
    pub token: TokenFacts,
    /// Relevant mechanisms and whether the token lists them for wrapping.
    pub mechanisms: Vec<(String, bool)>,
    /// Self-test results.
    pub rows: Vec<ProbeRow>,
    /// Whether the token keeps `CKA_MODIFIABLE=false` and `CKA_COPYABLE=false`
    /// (tried on a throwaway session key); `Err` says why it could not be tried.
    pub attribute_promises: Result<keygen::AttributePromises, String>,
}

/// Which key specs to test: one per family and size class by default.
pub fn default_specs() -> Vec<KeySpec> {
    KeySpec::ALL.to_vec()
}

/// Smallest KMS wrapping key size for which KMS allows `spec` with `alg`.
fn wrapping_bits_for(spec: KeySpec, alg: WrappingAlgorithm) -> usize {
    if alg.is_rsa_aes() || spec.family() != KeyFamily::Ec {
        return 2048;
    }
    [2048, 3072, 4096]
        .into_iter()
        .find(|b| oaep_payload_limit(*b, alg.oaep_hash()) >= spec.max_payload_len())
        .unwrap_or(4096)
}

/// Run the self-test for `specs` × `algorithms` on the selected token.
pub fn probe(
    module: &ModuleSpec,
    token: &TokenSelector,
    pin: &PinSource,
    specs: &[KeySpec],
    algorithms: &[WrappingAlgorithm],
    preference: AesWrapPreference,
    progress: &mut dyn FnMut(&str),
) -> Result<ProbeReport, Error> {
    let hsm = Hsm::open(module, token)?;
    let mechs = Mechanisms::probe(&hsm)?;
    let pin = pin
        .read(&format!("token {:?}", hsm.facts.label))
        .map_err(HsmError::from)?;
    let session = hsm.login(&pin)?;
    drop(pin);
    let listed = [
        crate::hsm::ffi::CKM_RSA_PKCS_OAEP,
        crate::hsm::ffi::CKM_RSA_AES_KEY_WRAP,
        crate::hsm::ffi::CKM_AES_KEY_WRAP_KWP,
        crate::hsm::ffi::CKM_AES_KEY_WRAP_PAD,
    ]
    .into_iter()
    .map(|m| (mechanisms::name(m), mechs.supports(m, CKF_WRAP)))
    .collect();
    let attribute_promises = keygen::attribute_promises(&session).map_err(|e| e.to_string());
    let mut rows = Vec::new();
    for &spec in specs {
        for &alg in algorithms {
            let bits = wrapping_bits_for(spec, alg);
            let row = match check_combination(spec, alg, bits) {
                Err(e) => ProbeRow {
                    key_spec: spec,
                    wrapping_algorithm: alg,
                    wrapping_key_bits: bits,
                    result: "kms-forbids",
                    method: None,
                    detail: e.to_string(),
                },
                Ok(()) => match selftest::prove_with(&session, &mechs, spec, alg, bits, preference)
                {
                    Ok(pass) => ProbeRow {
                        key_spec: spec,
                        wrapping_algorithm: alg,
                        wrapping_key_bits: bits,
                        result: "pass",
                        method: Some(pass.method),
                        detail: pass.method.describe(),
                    },
                    Err(HsmError::SelfTest { detail, .. })
                    | Err(HsmError::Unsupported { detail, .. }) => ProbeRow {
                        key_spec: spec,
                        wrapping_algorithm: alg,
                        wrapping_key_bits: bits,
                        result: "unsupported",
                        method: None,
                        detail: one_line(&detail),
                    },
                    Err(e) => return Err(e.into()),
                },
            };
            progress(&format!(
                "{:<17} {:<25} {}",
                spec.as_str(),
                alg.as_str(),
                row.result
            ));
            rows.push(row);
        }
    }
    Ok(ProbeReport {
        format: PROBE_FORMAT,
        token: hsm.facts.clone(),
        mechanisms: listed,
        rows,
        attribute_promises,
    })
}

/// The method the report proved for `spec` with `alg`, if any.
pub fn proven(report: &ProbeReport, spec: KeySpec, alg: WrappingAlgorithm) -> Option<&str> {
    report
        .rows
        .iter()
        .find(|r| r.key_spec == spec && r.wrapping_algorithm == alg && r.result == "pass")
        .map(|r| r.detail.as_str())
}

/// Fold a multi-line refusal into one line for the table.
fn one_line(detail: &str) -> String {
    detail
        .lines()
        .map(|l| l.trim().trim_start_matches("- "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
