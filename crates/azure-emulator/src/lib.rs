//! A local emulator of Entra ID, Microsoft Azure Attestation and Azure Managed HSM,
//! faithful to the wire protocol that Secure Key Release uses.
//!
//! One HTTPS process (`quarry-azure-emulator serve`) serves all three services on one
//! listener, `https://localhost:PORT`, with a certificate from its private CA ([`ca`]); its
//! state lives in one directory ([`persist`]) so principals, keys and the issuer configuration
//! survive a restart. The services:
//!
//! - [`entra`]: OpenID metadata, signing keys and the v2 token endpoint (client secret and
//!   client assertion), issuing RS256 access tokens;
//! - [`maa`]: `attest/SgxEnclave` over real SGX quotes, `/certs`, OpenID metadata, with a
//!   configurable issuer;
//! - [`hsm`]: the Managed HSM (keys, local RBAC, Secure Key Release);
//! - [`faults`]: latency, forced statuses, outages and short token lifetimes per route.
//!
//! # Contract between the server and the Managed HSM module
//!
//! The server ([`server`], [`state`]) owns the listener, the CA, Entra ID, MAA and fault
//! injection; [`hsm`] owns the Managed HSM. They meet here:
//!
//! - [`Emulator`] is the state every handler receives as `axum::extract::State<Arc<Emulator>>`.
//!   It holds [`Emulator::config`], [`Emulator::state`] (the [`persist::StateDir`], whose
//!   `update_json` gives locked, atomic read-modify-write of a JSON file), [`Emulator::ca`],
//!   [`Emulator::entra`], [`Emulator::maa`] and [`Emulator::faults`].
//! - For the HSM: [`entra::Entra::verify_access_token`] (signature, issuer, tenant, audience,
//!   expiry; returns `oid`, `appid`, `tid`), [`entra::Entra::tenant_id`] (for the
//!   `WWW-Authenticate` challenge), [`maa::Maa::verification_key`] and
//!   [`maa::Maa::verify_token`] (the emulator's own table of MAA issuers; never the network),
//!   and [`ca::Ca::issue_leaf`] (with [`ca::LeafKeyType::Rsa2048`] for the release-signing
//!   certificate of the HSM's host name; its chain is leaf, issuing CA, root).
//! - The HSM's routes are merged at the root of the router by [`hsm_routes`]; fault injection
//!   applies to them like to every other route, and a handler that issues tokens reads
//!   [`faults::TokenLifetime`] from the request extensions.
//! - Operator subcommands: the command line ([`cli`]) is built here; the HSM's subcommands plug
//!   in as `quarry-azure-emulator hsm ...`.

pub mod ca;
pub mod cli;
pub mod entra;
pub mod faults;
pub mod hsm;
pub mod http_util;
pub mod jose;
pub mod maa;
pub mod persist;
pub mod server;
pub mod signer;
pub mod state;

use std::sync::Arc;

pub use state::{Config, Emulator, OpenError};

/// The Managed HSM's routes, merged at the root of the server's router.
pub fn hsm_routes(_emulator: &Arc<Emulator>) -> Result<axum::Router<Arc<Emulator>>, OpenError> {
    Ok(hsm::routes())
}
