//! The `gramine` backend: real SGX under Gramine, through the `/dev/attestation` pseudo-files.
//!
//! - `attestation_type` must read `dcap`; anything else (or its absence, as under
//!   `gramine-direct`) refuses the backend.
//! - A quote: one `write()` of all 64 bytes of report data to `user_report_data` (Gramine keeps
//!   only the last write, zero-padded), then a fresh open and read of `quote` (Gramine makes the
//!   quote when the file is opened). The quote must parse and carry the report data written,
//!   which catches a write that did not take. The write-then-read sequence is serialised.
//! - Seal keys: 16 bytes from `keys/_sgx_mrsigner` ([`SealPolicy::ProductKey`]) and
//!   `keys/_sgx_mrenclave` ([`SealPolicy::UniqueKey`]). Gramine derives them from the current
//!   CPUSVN and ISVSVN on this CPU: a move to another machine, a microcode update or a new
//!   ISVSVN changes them.
//! - The own identity comes from the report body of a quote over zero report data made at start.
//!
//! The root is configurable so tests can point it at a directory they prepare.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::quote::Quote;
use crate::{Enclave, EnclaveError, Identity, SealKey, SealPolicy};

/// Where Gramine mounts its attestation pseudo-files.
pub const DEFAULT_ROOT: &str = "/dev/attestation";

/// The largest quote Gramine returns.
const MAX_GRAMINE_QUOTE: usize = 8192;

/// Length of Gramine's SGX seal keys.
const SEAL_KEY_LEN: usize = 16;

/// The Gramine backend. See the module documentation.
#[derive(Debug)]
pub struct Gramine {
    root: PathBuf,
    identity: Identity,
    /// Serialises write-`user_report_data`-then-read-`quote`: the state is process-wide.
    quoting: Mutex<()>,
}

impl Gramine {
    /// Opens the backend at `root` (normally [`DEFAULT_ROOT`]): checks `attestation_type` and
    /// reads the own identity from a first quote.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, EnclaveError> {
        let root = root.into();
        let type_path = root.join("attestation_type");
        let kind = match fs::read(&type_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EnclaveError::Refused(format!(
                    "{} is missing: gramine runs without sgx (gramine-direct) or not at all",
                    type_path.display()
                )));
            }
            Err(e) => {
                return Err(EnclaveError::Io {
                    op: "read",
                    path: type_path,
                    source: e,
                });
            }
        };
        let kind = String::from_utf8_lossy(&kind);
        let kind = kind.trim_end_matches(['\n', '\0']);
        if kind != "dcap" {
            return Err(EnclaveError::Refused(format!(
                "{} reads {kind:?}: set sgx.remote_attestation = \"dcap\" in the gramine manifest",
                type_path.display()
            )));
        }

        let mut backend = Self {
            root,
            identity: Identity {
                mrenclave: [0; 32],
                mrsigner: [0; 32],
                isv_prod_id: 0,
                isv_svn: 0,
                debug: false,
            },
            quoting: Mutex::new(()),
        };
        let own = backend.quote_parsed(&[0; 64])?;
        backend.identity = own.report_body.identity();
        tracing::debug!(
            mrenclave = %hex::encode(backend.identity.mrenclave),
            mrsigner = %hex::encode(backend.identity.mrsigner),
            isv_prod_id = backend.identity.isv_prod_id,
            isv_svn = backend.identity.isv_svn,
            debug = backend.identity.debug,
            "gramine enclave identity"
        );
        Ok(backend)
    }

    /// The root of the attestation files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn quote_parsed(&self, report_data: &[u8; 64]) -> Result<Quote, EnclaveError> {
        // A poisoned lock only means another quote attempt panicked; the files hold no state
        // this one relies on, since it writes the report data again.
        let _guard = self.quoting.lock().unwrap_or_else(|p| p.into_inner());

        let data_path = self.root.join("user_report_data");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&data_path)
            .map_err(|e| EnclaveError::Io {
                op: "open",
                path: data_path.clone(),
                source: e,
            })?;
        let written = file.write(report_data).map_err(|e| EnclaveError::Io {
            op: "write",
            path: data_path.clone(),
            source: e,
        })?;
        if written != report_data.len() {
            return Err(EnclaveError::Invalid {
                what: "user_report_data write",
                detail: format!("{} took {written} of 64 bytes", data_path.display()),
            });
        }
        drop(file);

        let quote_path = self.root.join("quote");
        let raw = fs::read(&quote_path).map_err(|e| EnclaveError::Io {
            op: "read",
            path: quote_path.clone(),
            source: e,
        })?;
        if raw.is_empty() || raw.len() > MAX_GRAMINE_QUOTE {
            return Err(EnclaveError::Invalid {
                what: "quote",
                detail: format!("{} returned {} bytes", quote_path.display(), raw.len()),
            });
        }
        let quote = Quote::parse(&raw).map_err(|e| EnclaveError::Invalid {
            what: "quote",
            detail: format!("{}: {e}", quote_path.display()),
        })?;
        if quote.report_body.report_data != *report_data {
            return Err(EnclaveError::Invalid {
                what: "quote",
                detail: format!(
                    "{} carries report data {} instead of the {} written",
                    quote_path.display(),
                    hex::encode(quote.report_body.report_data),
                    hex::encode(report_data)
                ),
            });
        }
        Ok(quote)
    }
}

impl Enclave for Gramine {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, EnclaveError> {
        self.quote_parsed(report_data).map(|q| q.encode())
    }

    fn seal_key(&self, policy: SealPolicy) -> Result<SealKey, EnclaveError> {
        let name = match policy {
            SealPolicy::ProductKey => "_sgx_mrsigner",
            SealPolicy::UniqueKey => "_sgx_mrenclave",
        };
        let path = self.root.join("keys").join(name);
        let key = zeroize::Zeroizing::new(fs::read(&path).map_err(|e| EnclaveError::Io {
            op: "read",
            path: path.clone(),
            source: e,
        })?);
        if key.len() != SEAL_KEY_LEN {
            return Err(EnclaveError::Invalid {
                what: "seal key",
                detail: format!(
                    "{} returned {} bytes, expected {SEAL_KEY_LEN}",
                    path.display(),
                    key.len()
                ),
            });
        }
        Ok(SealKey::new(key.to_vec()))
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn is_simulation(&self) -> bool {
        false
    }
}
