//! Integration tests of the Secure Key Release client.

mod emulator;
mod fixtures;
mod secrets;
mod support;
mod tampered;
mod wire;
