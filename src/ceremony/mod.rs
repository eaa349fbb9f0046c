//! Ceremonies: the hash-chained transcript, custodian attestations (DSSE),
//! the custodian policy, and verification of a ceremony directory.

pub mod attest;
pub mod dsse;
pub mod file;
pub(crate) mod params_digest;
pub(crate) mod policy;
pub mod run;
pub mod transcript;

pub use attest::{verify, VerifiedCeremony, VerifyError};
pub use policy::{Policy, PolicyError};
