//! Integration tests of the `quarry` binary, run as a process.

mod bad_input;
mod hsm_policy;
mod manifest_check;
mod support;
mod workflow;
