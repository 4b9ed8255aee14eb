//! The crate's error type.

/// Everything that can go wrong in this crate.
///
/// Messages name the value that failed; they never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The random number generator failed.
    #[error("random number generator failed")]
    Random,

    /// Generating a key pair failed inside the crypto library.
    #[error("generating a {what} key failed")]
    KeyGeneration {
        /// The kind of key, e.g. `P-384`.
        what: &'static str,
    },

    /// A private key could not be parsed or does not fit its use.
    #[error("invalid {what} private key")]
    InvalidPrivateKey {
        /// Which key, e.g. `root CA`.
        what: &'static str,
    },

    /// Signing failed inside the crypto library.
    #[error("signing {what} failed")]
    Signing {
        /// What was being signed.
        what: &'static str,
    },

    /// rcgen refused to build a certificate.
    #[error("building the {what} certificate failed")]
    CertificateBuild {
        /// Which certificate.
        what: String,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },

    /// A certificate could not be parsed or is not what it should be.
    #[error("invalid {what} certificate: {reason}")]
    InvalidCertificate {
        /// Which certificate.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A certificate signing request could not be used.
    #[error("invalid certificate signing request: {reason}")]
    InvalidCsr {
        /// What is wrong with it.
        reason: String,
    },

    /// A secret type or size the crate cannot generate.
    #[error("unsupported {secret_type} size {size}: {reason}")]
    UnsupportedSecretSize {
        /// The manifest's secret type, e.g. `cert-ecdsa`.
        secret_type: &'static str,
        /// The requested `Size`.
        size: u32,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A secret type that has no generator.
    #[error("unsupported secret type {0:?}")]
    UnsupportedSecretType(String),

    /// A field of a certificate template with security effect that cannot be honoured.
    #[error("certificate template field {field} cannot be honoured: {reason}")]
    UnsupportedTemplateField {
        /// The Go `x509.Certificate` field name, e.g. `PermittedURIDomains`.
        field: &'static str,
        /// Why.
        reason: String,
    },

    /// Deriving a key failed.
    #[error("deriving {what} failed: {reason}")]
    KeyDerivation {
        /// What was derived.
        what: &'static str,
        /// Why it failed.
        reason: &'static str,
    },

    /// A recovery public key could not be used.
    #[error("invalid recovery key {name:?}: {reason}")]
    InvalidRecoveryKey {
        /// The key's name in the manifest's `RecoveryKeys`.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// `RecoveryThreshold` does not fit the number of recovery keys.
    #[error("invalid recovery threshold {threshold} for {keys} recovery keys")]
    InvalidRecoveryThreshold {
        /// The manifest's `RecoveryThreshold`.
        threshold: u32,
        /// The number of recovery keys.
        keys: usize,
    },

    /// RSA-OAEP encryption to a public key failed.
    #[error("encrypting the recovery secret for {name:?} failed")]
    RecoveryEncryption {
        /// The key's name.
        name: String,
    },

    /// RSA-OAEP decryption failed (wrong key or corrupted ciphertext).
    #[error("decrypting the recovery secret failed")]
    Decryption,

    /// A signature does not verify.
    #[error("signature over {what} does not verify")]
    BadSignature {
        /// What was signed.
        what: &'static str,
    },

    /// Splitting or combining Shamir shares failed.
    #[error(transparent)]
    Shamir(#[from] crate::shamir::ShamirError),

    /// Sealed CA material that cannot be restored.
    #[error("invalid CA material: {reason}")]
    InvalidCaMaterial {
        /// What is wrong with it.
        reason: String,
    },
}
