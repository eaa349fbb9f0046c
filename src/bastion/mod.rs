//! The online half (`byok-bastion`, cargo feature `bastion`): talks to KMS,
//! and uploads only what custodians signed.

pub mod alias;
pub mod audit;
pub mod batch;
pub mod client;
pub mod errors;
pub mod import;
pub mod prepare;
pub mod prove;
pub mod regions;
pub mod repoint;
pub mod rotate;
pub mod state;
pub mod status;

pub use client::{Bastion, Endpoint};
pub use errors::BastionError;
