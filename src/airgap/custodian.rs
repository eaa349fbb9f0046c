//! `byok-airgap custodian init` and `byok-airgap ceremony sign`: custodian
//! keys on their own tokens, and DSSE attestations over a ceremony directory.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use super::Error;
use crate::ceremony::attest::{self, Payload};
use crate::ceremony::dsse::{self, CustodianKey, Envelope, Signature, PAYLOAD_TYPE};
use crate::ceremony::policy::CustodianEntry;
use crate::ceremony::transcript::{Step, Wrapped};
use crate::hsm::pin::PinSource;
use crate::hsm::sign::{self, CustodianKeyType};
use crate::hsm::{Hsm, HsmError, ModuleSpec, TokenSelector};
use crate::names::CustodianName;

/// The result of `custodian init`: the entry to put in the policy.
#[derive(Debug, Serialize)]
pub struct NewCustodian {
    /// The policy entry.
    pub entry: CustodianEntry,
    /// DSSE key ID (SHA-256 of the SPKI).
    pub keyid: String,
}

/// Generate a custodian signing key on the custodian's token.
pub fn init(
    module: &ModuleSpec,
    token: &TokenSelector,
    pin: &PinSource,
    name: &CustodianName,
    key_label: &str,
    kind: CustodianKeyType,
) -> Result<NewCustodian, Error> {
    let hsm = Hsm::open(module, token)?;
    let pin = pin
        .read(&format!("{name}'s token {:?}", hsm.facts.label))
        .map_err(HsmError::from)?;
    let session = hsm.login(&pin)?;
    drop(pin);
    let spki = sign::generate(&session, kind, key_label)?;
    Ok(NewCustodian {
        entry: CustodianEntry {
            name: name.clone(),
            public_key: base64::engine::general_purpose::STANDARD.encode(&spki),
        },
        keyid: dsse::keyid(&spki),
    })
}

/// What a custodian is about to sign, checked (chain, files, and that the
/// run finished unless `partial`) first; see [`attest::payload_for`].
pub fn prepare(
    dir: &Path,
    custodian: &CustodianName,
    confirmation: &str,
    partial: bool,
) -> Result<Payload, Error> {
    attest::payload_for(dir, custodian, confirmation, partial).map_err(Error::from)
}

/// Sign `payload` with the custodian's key on their token and write
/// `attestations/NAME.dsse.json` (never overwriting).
pub fn sign(
    module: &ModuleSpec,
    token: &TokenSelector,
    pin: &PinSource,
    dir: &Path,
    payload: &Payload,
    key_label: &str,
) -> Result<PathBuf, Error> {
    let hsm = Hsm::open(module, token)?;
    let pin = pin
        .read(&format!(
            "{}'s token {:?}",
            payload.custodian, hsm.facts.label
        ))
        .map_err(HsmError::from)?;
    let session = hsm.login(&pin)?;
    drop(pin);
    let key = sign::find(&session, key_label)?;
    let body = serde_json::to_vec(payload).expect("payload serializes");
    let message = dsse::pae(PAYLOAD_TYPE, &body);
    let sig = sign::sign(&session, &key, &message)?;
    // Check our own signature before anyone relies on it.
    let verifier = CustodianKey::from_spki_der(&key.spki).map_err(|e| HsmError::KeyUnsuitable {
        label: key_label.into(),
        reason: e.to_string(),
    })?;
    if let Err(e) = verifier.verify(&message, &sig) {
        return Err(HsmError::Unsupported {
            token: hsm.facts.label.clone(),
            what: "produce a valid signature".into(),
            detail: format!("checked with the key's own public key, the signature {e}"),
        }
        .into());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let env = Envelope {
        payload: b64.encode(&body),
        payload_type: PAYLOAD_TYPE.into(),
        signatures: vec![Signature {
            keyid: dsse::keyid(&key.spki),
            sig: b64.encode(&sig),
        }],
    };
    Ok(attest::write_envelope(dir, &payload.custodian, &env)?)
}

/// What a custodian is shown about the wrapping keys before signing: the
/// parameters digest the run confirmed, and every wrap's KMS key and
/// wrapping-key fingerprint, as the (already verified) transcript records them.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WrappingKeysShown {
    /// The parameters digest confirmed at `ceremony run` (absent for a single `wrap`).
    pub parameters_digest: Option<String>,
    /// `(bundle, KMS key, wrapping key SHA-256)` for every wrap.
    pub wraps: Vec<(String, String, String)>,
}

/// Read what [`WrappingKeysShown`] describes from `dir`'s transcript.
pub fn wrapping_keys(dir: &Path) -> Result<WrappingKeysShown, Error> {
    let t =
        crate::ceremony::transcript::verify_file(&dir.join(crate::ceremony::transcript::FILE_NAME))
            .map_err(crate::ceremony::VerifyError::from)?;
    let mut shown = WrappingKeysShown::default();
    for e in &t.entries {
        match &e.step {
            Step::CeremonyStart(s) => shown.parameters_digest = s.parameters_digest.clone(),
            Step::WrapStart(s) => {
                shown
                    .wraps
                    .push((".".into(), s.key_id.clone(), s.wrapping_key_sha256.clone()))
            }
            Step::Wrapped(Wrapped::Target(w)) => shown.wraps.push((
                format!("{}/{}", w.label, w.target),
                w.key_id.clone(),
                w.wrapping_key_sha256.clone(),
            )),
            _ => {}
        }
    }
    Ok(shown)
}
