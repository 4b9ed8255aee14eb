//! The MarbleRun-compatible manifest: model, lenient decoding, validation, update rules
//! and parameter templates. Pure: no I/O, no clock, no randomness except through arguments.
//!
//! - [`ManifestDocument`] decodes JSON or YAML into a [`Manifest`], keeps the uploaded bytes
//!   (the fingerprint is their SHA-256) and lists ignored keys as [`Warning`]s.
//! - [`model`] is the data model, field for field as MarbleRun's.

mod cert;
pub mod check;
mod decode;
mod document;
pub mod model;
mod node;
pub mod pem;
pub mod template;
pub mod update;

pub use check::{
    CheckError, EmptyEnvironment, Environment, Report, Violation, check, missing_hsm_variables,
};
pub use decode::{FieldError, Warning, WarningKind};
pub use document::{DecodeError, ManifestDocument, fingerprint};
pub use model::{
    Action, CertTemplate, Config, FeatureGate, FileValue, Manifest, Marble, Package, Parameters,
    ResourceType, Role, SealMode, Secret, SecretBytes, SecretCert, SecretType, TlsTag, TlsTagEntry,
    User,
};
pub use node::{Format, SyntaxError};
