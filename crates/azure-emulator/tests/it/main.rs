//! Integration tests of the emulator: the real binary on loopback, driven over HTTPS.

mod cli;
mod common;
mod entra;
mod faults;
mod maa;
