//! Integration tests of the `quarry` binary, run as a process.

mod manifest_check;
