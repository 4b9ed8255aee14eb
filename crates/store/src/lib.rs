//! The Coordinator's sealed state: a byte key/value map with snapshot transactions, kept on disk
//! in two files that only the enclave can read, written so that a crash at any point leaves
//! either the old or the new state.
//!
//! - `sealed_data`: the recovery data in the clear, then the state encrypted with AES-256-GCM
//!   under a random 256-bit data key.
//! - `sealed_key`: the data key sealed with the enclave's seal key, bound to the exact bytes of
//!   `sealed_data` by their SHA-256, then wrapped by zero or more [`WrapLayer`]s (the
//!   Coordinator's Managed HSM key).
//!
//! Start-up: [`Store::open`] locks the seal directory and reads the files;
//! [`Store::required_wrap_keys`] names the HSM key versions to fetch; [`Store::unseal`] opens
//! the state or reports [`StoreError::NeedsRecovery`] or [`StoreError::Corrupted`]. The file
//! formats are in [`frame`], the commit protocol in [`Store`]'s module documentation, and
//! `docs/store.md` describes both for operators.

mod crypto;
mod error;
pub mod frame;
pub mod fs;
mod state;
mod store;
mod wrap;

pub use crypto::{CryptoError, DATA_KEY_LEN, DataKey};
pub use error::{Corruption, RecoveryReason, StoreError};
pub use frame::{FrameError, HsmKeyRef};
pub use state::{State, StateError};
pub use store::{
    LOCK_FILE, MAX_RECOVERY_DATA_LEN, MAX_SEALED_DATA_LEN, MAX_SEALED_KEY_LEN, SEALED_DATA,
    SEALED_KEY, SealMode, Status, Store, Transaction,
};
pub use wrap::{HsmWrapKey, WrapError, WrapLayer};
