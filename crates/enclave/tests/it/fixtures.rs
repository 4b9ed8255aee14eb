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

/// The real quote's collateral (JSON in dcap-qvl's shape).
pub(crate) fn real_collateral() -> quarry_enclave::collateral::Collateral {
    quarry_enclave::collateral::Collateral::from_file(
        &sgx_dir().join("dcap-qvl-sample.collateral.json"),
    )
    .expect("read sample collateral")
}

/// 2025-06-19T10:56:11Z: the first second the sample collateral is valid.
pub(crate) const VALID_FROM: i64 = 1_750_330_571;
/// 2025-07-19T10:01:18Z: the last second the sample collateral is valid.
pub(crate) const VALID_UNTIL: i64 = 1_752_919_278;
