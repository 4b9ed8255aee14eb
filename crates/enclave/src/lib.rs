//! The TEE boundary: everything Quarry asks of the hardware goes through the [`Enclave`] trait —
//! a quote over 64 bytes of report data, a seal key for a [`SealPolicy`], and the enclave's own
//! [`Identity`]. Backends: [`gramine`] (real SGX through `/dev/attestation`) and [`simulation`]
//! (no TEE, insecure, for development); [`select()`] chooses one so that simulation is impossible
//! where a TEE exists.
//!
//! Around the trait: [`quote`] parses SGX DCAP quotes (versions 3 and 4, with or without the
//! Open Enclave header), [`claims`] maps a report body to Azure Attestation claims,
//! [`collateral`] and [`pccs`] provide Intel's collateral from a file or a PCCS, and [`verify`]
//! checks quotes with `dcap-qvl` and applies the TCB acceptance rules of manifest packages.
//!
//! The trait is deliberately narrow so that a backend for Azure confidential VMs (SEV-SNP or TDX
//! through the vTPM) can implement it too.

pub mod claims;
pub mod collateral;
pub mod gramine;
pub mod pccs;
pub mod quote;
pub mod select;
pub mod simulation;
pub mod verify;

pub use select::{from_env, select};

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Which enclave property a seal key is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealPolicy {
    /// Bound to the signer (MRSIGNER) and product: any enclave version of the same signer and
    /// product, at the same or a higher security version, derives the same key.
    ProductKey,
    /// Bound to the exact enclave measurement (MRENCLAVE).
    UniqueKey,
}

/// A 128-bit or larger symmetric key derived by the TEE for sealing. Zeroed on drop; its
/// `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SealKey(Vec<u8>);

impl SealKey {
    /// Wraps raw key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// What an enclave is: the values a quote's report body carries and policies are written
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// MRENCLAVE: the measurement of the enclave's code and initial data.
    pub mrenclave: [u8; 32],
    /// MRSIGNER: SHA-256 of the enclave signer's public key modulus.
    pub mrsigner: [u8; 32],
    /// ISVPRODID: the product id the signer assigned.
    pub isv_prod_id: u16,
    /// ISVSVN: the security version number the signer assigned.
    pub isv_svn: u16,
    /// Whether the enclave runs in debug mode (its memory is readable by a debugger).
    pub debug: bool,
}

/// The TEE operations Quarry needs.
pub trait Enclave: Send + Sync + fmt::Debug {
    /// A quote whose report data is `report_data`, in the SGX DCAP layout (without the Open
    /// Enclave header).
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, EnclaveError>;

    /// The seal key for `policy`.
    fn seal_key(&self, policy: SealPolicy) -> Result<SealKey, EnclaveError>;

    /// The enclave's own identity.
    fn identity(&self) -> &Identity;

    /// Whether this backend offers no protection (simulation).
    fn is_simulation(&self) -> bool;
}

/// A failure of the TEE boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnclaveError {
    /// A `/dev/attestation` file or a seal-key file could not be read or written.
    #[error("{op} {path}")]
    Io {
        /// What was attempted (`read`, `write`, `open`).
        op: &'static str,
        /// The file concerned.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The backend answered with something that is not what it should be.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The requested backend cannot run here.
    #[error("enclave backend refused: {0}")]
    Refused(String),
}
