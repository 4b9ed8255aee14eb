//! Integration tests of the `quarry` binary, run as a process.

mod attestation;
mod bad_input;
mod completion;
mod dev;
mod hsm_policy;
mod manifest_check;
mod support;
mod workflow;
