//! The Secure Key Release client: Entra ID credentials, Microsoft Azure Attestation,
//! Managed HSM key release, release-response verification and key unwrapping.
//!
//! [`SkrClient::release`] runs one release: it generates an ephemeral RSA wrapping key (while
//! the access token is requested), publishes the key's public half as a JWK set, gets an
//! enclave quote whose report data starts with SHA-256 of that set, attests it with MAA
//! (`attest/SgxEnclave`, JSON runtime data), asks Managed HSM to release the key to the MAA
//! token with `RSA_AES_KEY_WRAP_384` and a fresh nonce, verifies the signed answer
//! ([`verify`]), and unwraps the key ([`wrapping`]). It returns the AES-256 key and its
//! version as a [`ReleasedKey`].
//!
//! Every failure is a [`SkrError`] with the [`Step`] that failed and an [`ErrorClass`] that
//! tells the Coordinator whether to retry, wait for an operator, or give up. Secrets (client
//! secret, tokens, keys) live in types that are zeroed on drop and print only their type name.
//!
//! The client talks plain HTTPS through reqwest and rustls with aws-lc-rs; it uses no Azure
//! SDK and shares no wire-format code with the emulator.

pub mod client;
pub mod cloud;
pub mod config;
pub mod credential;
pub mod error;
pub mod http;
pub mod maa;
pub mod retry;
pub mod trust;
pub mod verify;
pub mod wrapping;

pub use client::{ClientOptions, Pipeline, ReleasedKey, SkrClient};
pub use config::{ClientSecret, ConfigError, CredentialConfig, SkrConfig};
pub use credential::AccessToken;
pub use error::{ErrorClass, ErrorKind, SkrError, Step};
pub use maa::MaaToken;
pub use retry::{Clock, RetryPolicy};
pub use trust::{TrustError, TrustStore, verify_chain};
pub use verify::{Expected, VerifiedRelease, verify_release};
pub use wrapping::{WrapAlgorithm, WrappingKey, WrappingKeySize};
