//! The store's errors. Two of them decide what the Coordinator does at start-up:
//! [`StoreError::NeedsRecovery`] (the sealed key cannot be unsealed or does not belong to this
//! `sealed_data`) and [`StoreError::Corrupted`] (a file's frame is broken). Errors that may go
//! away on their own — I/O, the enclave, a wrap key not fetched yet — are neither.

use std::fmt;
use std::io;
use std::path::PathBuf;

use quarry_enclave::EnclaveError;

use crate::crypto::CryptoError;
use crate::frame::{FrameError, HsmKeyRef};
use crate::state::StateError;
use crate::wrap::WrapError;

/// A failure of the sealed store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another store in this process) holds the seal directory's lock.
    #[error("seal directory {} is locked by another Coordinator", dir.display())]
    Locked {
        /// The seal directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was attempted (`read`, `create`, `write`, `fsync`, `rename`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A sealed file is larger than the store accepts.
    #[error("{} is larger than the limit of {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A sealed file's frame is broken: it cannot be what the store wrote.
    #[error("{} is corrupted", path.display())]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is broken.
        #[source]
        source: Corruption,
    },
    /// The sealed key cannot be unsealed or does not belong to `sealed_data`; the state can only
    /// be restored with the recovery key(s).
    #[error("sealed state needs recovery: {reason}")]
    NeedsRecovery {
        /// Why.
        reason: RecoveryReason,
    },
    /// The sealed key is wrapped with an HSM key that was not supplied; fetch exactly this key
    /// version and unseal again.
    #[error("sealed key is wrapped with HSM key {key}, which was not supplied")]
    WrapKeyRequired {
        /// The key to fetch.
        key: Box<HsmKeyRef>,
    },
    /// The store has not been unsealed yet.
    #[error("store is not unsealed yet")]
    NotUnsealed,
    /// The store is in recovery mode: nothing is written until it is recovered or its state is
    /// discarded.
    #[error("store is in recovery mode, nothing is written")]
    InRecovery,
    /// The operation is only allowed in recovery mode (or, for a recovery, while sealed).
    #[error("store is not in recovery mode")]
    NotInRecovery,
    /// A commit failed after `sealed_data` was replaced; which state is on disk is decided when
    /// the store is opened again. The store refuses further commits.
    #[error("commit failed half-way, reopen the store")]
    InDoubt {
        /// The failure.
        #[source]
        source: Box<StoreError>,
    },
    /// An earlier commit failed half-way ([`StoreError::InDoubt`]); the store must be opened
    /// again before anything else is committed.
    #[error("an earlier commit failed half-way, reopen the store")]
    NeedsReopen,
    /// More wrap layers were configured than a sealed key may carry.
    #[error("{count} wrap layers configured, at most {max} allowed", max = crate::frame::MAX_WRAP_LAYERS)]
    TooManyWrapLayers {
        /// How many were configured.
        count: usize,
    },
    /// The enclave did not provide a seal key.
    #[error("enclave seal key unavailable")]
    Enclave(#[source] EnclaveError),
    /// The store's own cryptography failed.
    #[error("sealing failed")]
    Crypto(#[source] CryptoError),
    /// A wrap layer failed while sealing.
    #[error("wrap layer with HSM key {key} failed")]
    Wrap {
        /// The layer's key.
        key: Box<HsmKeyRef>,
        /// The failure.
        #[source]
        source: WrapError,
    },
    /// A key given for recovery does not decrypt `sealed_data`.
    #[error("recovery key does not decrypt sealed_data")]
    WrongRecoveryKey,
    /// The state or its recovery data is larger than the store writes.
    #[error("{what} has {len} bytes, more than the limit of {limit}")]
    StateTooLarge {
        /// `state` or `recovery data`.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        limit: u64,
    },
}

/// What is broken in a corrupted file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The file or frame layout.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The decrypted state's encoding.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state does not decrypt with the key that the sealed key holds for it.
    #[error("state does not decrypt with its own data key")]
    DataAuthentication,
}

/// Why the state needs recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryReason {
    /// There is `sealed_data` but no `sealed_key`.
    KeyMissing,
    /// The enclave's seal key does not open the sealed key, or the sealed key belongs to another
    /// `sealed_data` (an older one, or a modified file).
    KeyMismatch,
    /// A correctly identified HSM key does not open its wrap layer.
    WrapKeyMismatch {
        /// The key that was used.
        key: HsmKeyRef,
    },
}

impl fmt::Display for RecoveryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyMissing => f.write_str("sealed_key is missing"),
            Self::KeyMismatch => f.write_str(
                "sealed_key does not open with this enclave's seal key or belongs to another \
                 sealed_data",
            ),
            Self::WrapKeyMismatch { key } => write!(f, "HSM key {key} does not open sealed_key"),
        }
    }
}
