//! Quarry's public-key infrastructure.
//!
//! This crate holds every piece of cryptography the Coordinator needs besides sealing:
//!
//! - [`ca`]: the Coordinator's three certificate authorities (root, intermediate and Marble
//!   root, all ECDSA P-384), the manifest signature by the root key, and the serialisation of
//!   that material for the sealed state;
//! - [`marble`]: the certificate and key a Marble receives at activation;
//! - [`template`] and [`secrets`]: secrets of the manifest (`symmetric-key`, `cert-rsa`,
//!   `cert-ecdsa`, `cert-ed25519`), their certificates built from a manifest `Cert` template,
//!   and the per-Marble derivation of unique symmetric keys;
//! - [`recovery`] and [`shamir`]: the recovery secrets handed to the holders of the recovery
//!   keys (RSA-OAEP-SHA256, XOR split, or Shamir shares in HashiCorp Vault's layout), and the
//!   check of a recovery-secret upload's signature.
//!
//! The crate does no I/O and reads no clock: the time is an argument, and randomness that
//! callers may want to control comes through [`RandomSource`]. Key generation itself always
//! uses aws-lc-rs' generator. Private keys stay inside aws-lc-rs objects (which clear their
//! memory when freed) or in [`zeroize::Zeroizing`] buffers, and no type here prints key
//! bytes in its `Debug` output.

pub mod ca;
mod der;
mod error;
mod key;
pub mod marble;
pub mod recovery;
mod rng;
pub mod secrets;
pub mod shamir;
pub mod template;

pub use ca::{CaMaterial, CaNames, CoordinatorCa, verify_manifest_signature};
pub use error::Error;
pub use key::CaKey;
pub use marble::MarbleCredentials;
pub use rng::{RandomSource, SystemRandom};
