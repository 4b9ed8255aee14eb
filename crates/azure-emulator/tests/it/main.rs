//! Integration tests of the emulator: the real binary on loopback, driven over HTTPS.

mod cli;
mod common;
mod entra;
mod faults;
mod hsm;
mod hsm_conformance;
mod hsm_real;
mod hsm_support;
mod logging;
mod maa;
