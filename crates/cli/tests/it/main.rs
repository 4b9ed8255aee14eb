//! Integration tests of the `quarry` binary.
