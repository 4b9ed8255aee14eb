//! Integration tests of the Secure Key Release client.

mod fixtures;
mod secrets;
mod support;
mod tampered;
mod wire;
