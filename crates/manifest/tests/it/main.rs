//! Integration tests of the manifest crate.
