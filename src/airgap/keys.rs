//! `byok-airgap keys`: the secret and private keys on the token.

use super::Error;
use crate::hsm::keygen::{self, KeyListing};
use crate::hsm::pin::PinSource;
use crate::hsm::{Hsm, HsmError, ModuleSpec, TokenFacts, TokenSelector};

/// List the keys on the selected token.
pub fn list(
    module: &ModuleSpec,
    token: &TokenSelector,
    pin: &PinSource,
) -> Result<(TokenFacts, Vec<KeyListing>), Error> {
    let hsm = Hsm::open(module, token)?;
    let pin = pin
        .read(&format!("token {:?}", hsm.facts.label))
        .map_err(HsmError::from)?;
    let session = hsm.login(&pin)?;
    drop(pin);
    let keys = keygen::list(&session)?;
    Ok((hsm.facts.clone(), keys))
}
