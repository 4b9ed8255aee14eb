//! The errors of the Coordinator's operations, in the classes the Client API answers with:
//! invalid input (`400 fail`), the wrong state (`409`), not available yet (`503`), absent
//! (`404`), and internal failures (`500`, logged at the boundary, not sent in detail).

use std::collections::BTreeMap;

use quarry_store::StoreError;

use super::keys::KeyError;

/// What a client learns of a commit in doubt ([`CoreError::InDoubt`]).
pub const IN_DOUBT: &str = "the sealed state was written but the write could not be confirmed; \
                            restart the Coordinator, which then serves whichever state is on disk";

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
    Store(#[source] StoreError),
    /// A stored value is invalid.
    #[error("sealed state")]
    Key(#[from] KeyError),
    /// Cryptography failed.
    #[error("cryptography")]
    Pki(#[from] quarry_pki::Error),
    /// The enclave failed.
    #[error("enclave")]
    Enclave(#[from] quarry_enclave::EnclaveError),
    /// A commit replaced `sealed_data` but could not finish: the state on disk is the old one or
    /// the new one, and only a restart tells which. The store refuses further commits until
    /// then ([`StoreError::NeedsReopen`] is reported as this too, without secrets).
    #[error("{}", IN_DOUBT)]
    InDoubt {
        /// The store's failure (logged, not sent).
        #[source]
        source: StoreError,
        /// The recovery secrets the new state was issued with: if the restart finds the new
        /// state, they are the only way to recover it, so the client gets them even now.
        recovery_secrets: Option<IssuedSecrets>,
    },
    /// Another internal failure.
    #[error("{0}")]
    Internal(String),
}

/// Recovery secrets (RSA-OAEP ciphertexts, one per recovery key name) issued with a state whose
/// commit is in doubt. `Debug` shows the key names only.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedSecrets(pub BTreeMap<String, Vec<u8>>);

impl std::fmt::Debug for IssuedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl From<StoreError> for CoreError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InDoubt { .. } | StoreError::NeedsReopen => Self::InDoubt {
                source: error,
                recovery_secrets: None,
            },
            other => Self::Store(other),
        }
    }
}

/// Commits `tx`, which issues `recovery_secrets` with the new state. If the commit's outcome is
/// in doubt, the error carries the secrets: should the restart find the new state on disk,
/// nobody could recover it without them.
pub(crate) fn commit_issuing(
    tx: quarry_store::Transaction<'_>,
    recovery_secrets: Option<&BTreeMap<String, Vec<u8>>>,
) -> Result<(), CoreError> {
    tx.commit().map_err(|error| match error {
        // This commit wrote `sealed_data`; after an earlier one (`NeedsReopen`) it wrote nothing,
        // and its secrets belong to no state.
        StoreError::InDoubt { .. } => CoreError::InDoubt {
            source: error,
            recovery_secrets: recovery_secrets.cloned().map(IssuedSecrets),
        },
        other => other.into(),
    })
}

impl CoreError {
    /// An invalid-input error with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }
}
