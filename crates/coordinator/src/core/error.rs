//! The errors of the Coordinator's operations, in the classes the Client API answers with:
//! invalid input (`400 fail`), the wrong state (`409`), not available yet (`503`), absent
//! (`404`), and internal failures (`500`, logged at the boundary, not sent in detail).

use quarry_store::StoreError;

use super::keys::KeyError;

/// A failed operation of the Coordinator core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The request is wrong; the message names the field or value.
    #[error("{message}")]
    InvalidInput {
        /// What was wrong.
        message: String,
    },
    /// The operation is not allowed in the Coordinator's current state.
    #[error(
        "server is not in expected state: {operation} needs {expected}, the Coordinator is {actual}"
    )]
    WrongState {
        /// The operation.
        operation: &'static str,
        /// The states in which it is allowed.
        expected: &'static str,
        /// The current state, described.
        actual: String,
    },
    /// The Coordinator cannot serve this yet (waiting for a key release).
    #[error("{message}")]
    Unavailable {
        /// What it is waiting for.
        message: String,
    },
    /// The requested value does not exist.
    #[error("{what}")]
    NotFound {
        /// What is missing.
        what: String,
    },
    /// The sealed store failed.
    #[error("sealed store")]
    Store(#[from] StoreError),
    /// A stored value is invalid.
    #[error("sealed state")]
    Key(#[from] KeyError),
    /// Cryptography failed.
    #[error("cryptography")]
    Pki(#[from] quarry_pki::Error),
    /// The enclave failed.
    #[error("enclave")]
    Enclave(#[from] quarry_enclave::EnclaveError),
    /// Another internal failure.
    #[error("{0}")]
    Internal(String),
}

impl CoreError {
    /// An invalid-input error with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }
}
