//! byok-ceremony: move key material from an on-premise HSM into AWS KMS
//! without the plaintext key ever leaving the HSM.
//!
//! The modules follow the trust boundaries:
//! * [`kms`]: what KMS accepts, and the import-parameters file that crosses the air gap;
//! * [`hsm`]: the PKCS#11 driver (key generation, wrapping and self-test inside the HSM);
//! * [`bundle`]: what the air-gapped side writes for removable media;
//! * [`ceremony`]: the hash-chained transcript, custodian attestations and their verification;
//! * [`airgap`]: the `byok-airgap` commands;
//! * [`names`] and `media`: path-safe names and bounded reads for what comes on removable media;
//! * `bastion` (feature `bastion`): the online half, the only code that talks to AWS.
//!
//! The public surface is what the two binaries, the benchmark, the tests and
//! the fuzz targets call: modules and items nothing outside the crate names
//! (`media`, `hsm::ffi`, `hsm::selftest`, `hsm::key_checks`, the policy and
//! parameters-digest internals, the steps of `ceremony run` and `wrap`) are
//! `pub(crate)` or private, so the dead-code lint sees what nothing uses.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod airgap;
#[cfg(feature = "bastion")]
pub mod bastion;
pub mod bundle;
pub mod ceremony;
pub mod fingerprint;
pub mod fuzzing;
pub mod hsm;
pub mod kms;
pub(crate) mod media;
pub mod names;
pub mod profile;

/// This tool's version, recorded in every manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
