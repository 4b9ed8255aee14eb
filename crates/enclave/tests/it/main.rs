//! Integration tests of the enclave boundary against the real SGX fixtures in `testdata/sgx`.

mod backends;
mod fixtures;
mod pccs;
mod quote;
mod verify;
