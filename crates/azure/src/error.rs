//! Errors of the key-release path, each with the [`Step`] that failed and its [`ErrorClass`].
//!
//! The class is what the Coordinator acts on (DESIGN "Start-up with HSM sealing, and error
//! classes"): a [`ErrorClass::Transient`] failure is retried with backoff, one that
//! [`ErrorClass::NeedsOperator`] keeps the Coordinator waiting with the message in its status,
//! and a [`ErrorClass::Definite`] one sends it to recovery mode. Inside one release attempt the
//! client itself retries transient failures a bounded number of times
//! ([`crate::RetryPolicy`]); everything else is returned at once.
//!
//! Messages name the failing value and carry Azure's own `code` and `message` when the service
//! sent them (for a 403 that is the explanation of the policy denial). They never contain
//! tokens, secrets or key material.

use std::fmt;

use quarry_enclave::EnclaveError;

/// What the caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The service was unreachable, timed out, throttled (429) or failed (5xx): retry later.
    Transient,
    /// A configuration, permission, policy or trust problem that only an operator can fix:
    /// keep waiting and report it, never enter recovery mode.
    NeedsOperator,
    /// A correctly signed answer that settles the question: the released key cannot be the
    /// sealing key. The Coordinator also uses this class for a key that does not open the
    /// sealed key.
    Definite,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::NeedsOperator => "needs operator",
            Self::Definite => "definite",
        })
    }
}

/// The step of one key release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Generating the ephemeral RSA wrapping key.
    KeyGeneration,
    /// Getting an access token from Entra ID or the managed-identity endpoint.
    Token,
    /// Getting a quote from the enclave.
    Quote,
    /// Attesting the quote with Microsoft Azure Attestation.
    Attestation,
    /// Asking Managed HSM to release the key.
    Release,
    /// Checking the signed release response.
    Verification,
    /// Unwrapping the released key.
    Unwrap,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KeyGeneration => "wrapping key generation",
            Self::Token => "access token",
            Self::Quote => "enclave quote",
            Self::Attestation => "attestation",
            Self::Release => "key release",
            Self::Verification => "release verification",
            Self::Unwrap => "key unwrap",
        })
    }
}

/// A failed key release: the step, and what went wrong.
#[derive(Debug)]
pub struct SkrError {
    step: Step,
    kind: ErrorKind,
}

impl SkrError {
    /// An error of `kind` at `step`.
    pub fn new(step: Step, kind: ErrorKind) -> Self {
        Self { step, kind }
    }

    /// The step that failed.
    pub fn step(&self) -> Step {
        self.step
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// What the caller should do about it.
    pub fn class(&self) -> ErrorClass {
        self.kind.class()
    }

    /// Azure's error code (`error.code` of Key Vault and MAA, `error` of Entra ID), if the
    /// service sent one.
    pub fn azure_code(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for SkrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.kind)
    }
}

impl std::error::Error for SkrError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// What went wrong in a step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service could not be reached or did not answer in time.
    #[error("{url} unreachable")]
    Unreachable {
        /// The URL requested (without query).
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The TLS handshake failed, usually because the server's certificate is not trusted.
    #[error("tls handshake with {url} failed")]
    Tls {
        /// The URL requested (without query).
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The service answered with an error status.
    #[error("{url} answered {status}{}{}", code_part(code), message_part(message))]
    Status {
        /// The URL requested (without query).
        url: String,
        /// The HTTP status.
        status: u16,
        /// Azure's error code, if any.
        code: Option<String>,
        /// Azure's error message, if any.
        message: Option<String>,
    },
    /// Managed HSM refused the access token again after a fresh one was fetched.
    #[error(
        "{url} refused a fresh access token (401){}",
        challenge_part(challenge)
    )]
    Unauthorized {
        /// The URL requested (without query).
        url: String,
        /// The `WWW-Authenticate` challenge, if any.
        challenge: Option<String>,
    },
    /// A response could not be read as what the protocol says it is.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// Why it could not be read.
        detail: String,
    },
    /// The federated token file could not be read.
    #[error("cannot read federated token file {path}")]
    FederatedTokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The enclave could not produce a quote.
    #[error("enclave refused to quote")]
    Enclave(#[source] EnclaveError),
    /// A cryptographic operation of the client itself failed (key generation).
    #[error("{0} failed")]
    Crypto(&'static str),
    /// A blocking task was cancelled or panicked.
    #[error("{0} task did not complete")]
    Task(&'static str),
    /// The `x5c` chain does not lead to a trusted root.
    #[error("certificate chain not trusted: {0}")]
    UntrustedChain(webpki::Error),
    /// The signing certificate is not valid for the vault's host name.
    #[error("signing certificate not valid for {host}: {detail}")]
    WrongHost {
        /// The vault's host name.
        host: String,
        /// The name check's error.
        detail: webpki::Error,
    },
    /// The JWS names a signature algorithm that is not accepted.
    #[error("unsupported jws algorithm {alg:?}")]
    UnsupportedAlgorithm {
        /// The `alg` header value.
        alg: String,
    },
    /// The JWS signature does not verify with the key of `x5c[0]`.
    #[error("jws signature ({alg}) does not verify with the certificate's key")]
    BadSignature {
        /// The `alg` header value.
        alg: String,
    },
    /// The echoed nonce is not the one sent.
    #[error("nonce mismatch: sent {expected:?}, response has {found:?}")]
    NonceMismatch {
        /// The nonce sent.
        expected: String,
        /// The nonce in the response, if any.
        found: Option<String>,
    },
    /// The released key is not the key requested.
    #[error("key id mismatch: requested {expected}, response has {found}")]
    KeyIdMismatch {
        /// What was requested (`https://host/keys/name[/version]`).
        expected: String,
        /// The key id in the response.
        found: String,
    },
    /// The key was wrapped with another mechanism than the one requested.
    #[error("wrapping mechanism mismatch: requested {expected}, response has {found:?}")]
    EncMismatch {
        /// The `enc` requested.
        expected: String,
        /// The `enc` in the response.
        found: String,
    },
    /// The key was wrapped for another key than the wrapping key sent.
    #[error("key_hsm wrapped for {found:?}, not for the wrapping key {expected:?}")]
    WrappingKeyMismatch {
        /// The `kid` of the wrapping key sent.
        expected: String,
        /// The `kid` in `key_hsm.header`.
        found: String,
    },
    /// The `key_hsm` ciphertext has a length the wrapping scheme cannot produce.
    #[error(
        "key_hsm ciphertext is {len} bytes; expected {rsa_len} bytes of RSA-OAEP and at least 16 bytes (a multiple of 8) of AES key wrap"
    )]
    CiphertextLength {
        /// Decoded length of the ciphertext.
        len: usize,
        /// The wrapping key's modulus length.
        rsa_len: usize,
    },
    /// RSA-OAEP decryption of the transport key failed.
    #[error("rsa-oaep decryption of the transport key failed")]
    RsaOaep,
    /// The RSA-OAEP plaintext is not an AES-128 or AES-256 key.
    #[error("transport key is {len} bytes, not 16 or 32")]
    TransportKeyLength {
        /// Its length.
        len: usize,
    },
    /// AES key unwrap with padding failed its integrity check.
    #[error("aes key unwrap (rfc 5649) failed its integrity check")]
    AesKeyUnwrap,
    /// The released key is not a symmetric (`oct`) key.
    #[error("released key has type {kty:?}, expected oct")]
    WrongKeyType {
        /// The released key's `kty`.
        kty: String,
    },
    /// The released key has the wrong size.
    #[error("released key is {len} bytes, expected {expected}")]
    WrongKeySize {
        /// Its length.
        len: usize,
        /// The length required.
        expected: usize,
    },
}

impl ErrorKind {
    /// The class of this failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Unreachable { .. } | Self::Task(_) => ErrorClass::Transient,
            Self::Status { status, .. } => status_class(*status),
            Self::Enclave(EnclaveError::Io { .. }) => ErrorClass::Transient,
            Self::WrongKeyType { .. } | Self::WrongKeySize { .. } => ErrorClass::Definite,
            _ => ErrorClass::NeedsOperator,
        }
    }
}

/// The class of an HTTP error status: 408, 429 and 5xx are transient, every other error
/// status needs an operator (400 bad request, 401/403 credentials, RBAC or policy, 404 key
/// missing, 409 key disabled or conflicting).
pub fn status_class(status: u16) -> ErrorClass {
    match status {
        408 | 429 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::NeedsOperator,
    }
}

fn code_part(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
}

fn message_part(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

fn challenge_part(challenge: &Option<String>) -> String {
    challenge
        .as_ref()
        .map(|c| format!("; challenge: {c}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_follow_the_design_table() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(status_class(status), ErrorClass::Transient, "{status}");
        }
        for status in [400, 401, 403, 404, 409] {
            assert_eq!(status_class(status), ErrorClass::NeedsOperator, "{status}");
        }
    }

    #[test]
    fn message_names_step_status_code_and_azure_message() {
        let err = SkrError::new(
            Step::Release,
            ErrorKind::Status {
                url: "https://hsm.example/keys/k/release".into(),
                status: 403,
                code: Some("AccessDenied".into()),
                message: Some("claim x-ms-sgx-mrsigner does not match".into()),
            },
        );
        assert_eq!(
            err.to_string(),
            "key release: https://hsm.example/keys/k/release answered 403 AccessDenied: \
             claim x-ms-sgx-mrsigner does not match"
        );
        assert_eq!(err.class(), ErrorClass::NeedsOperator);
        assert_eq!(err.azure_code(), Some("AccessDenied"));
    }

    #[test]
    fn wrong_key_size_is_definite() {
        let err = SkrError::new(
            Step::Unwrap,
            ErrorKind::WrongKeySize {
                len: 16,
                expected: 32,
            },
        );
        assert_eq!(err.class(), ErrorClass::Definite);
    }
}
