//! Integration tests of the sealed store.
