//! Paths and loaders for the real SGX fixtures.

use std::path::PathBuf;

/// The repository's `testdata/sgx` directory.
pub(crate) fn sgx_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sgx")
}

/// The real DCAP quote (version 3, 4600 bytes).
pub(crate) fn real_quote() -> Vec<u8> {
    std::fs::read(sgx_dir().join("dcap-qvl-sample.quote")).expect("read sample quote")
}
