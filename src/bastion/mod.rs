//! The online half (`byok-bastion`, cargo feature `bastion`): talks to KMS,
//! and uploads only what custodians signed.

mod alias;
pub mod audit;
mod batch;
pub(crate) mod canned;
mod client;
pub mod commands;
#[cfg(feature = "config-rule")]
pub mod config_rule;
mod errors;
pub(crate) mod fuzz;
pub mod iam;
mod import;
mod prepare;
mod prove;
pub mod regions;
pub mod repoint;
mod rotate;
mod state;
mod status;

pub use client::{check_endpoint, Bastion, Endpoint, EndpointProblem, EndpointSource};
pub use errors::{BastionError, DraftError, KeyProblem, Mismatch, Refusal, UsageError};
pub use state::StateError;
