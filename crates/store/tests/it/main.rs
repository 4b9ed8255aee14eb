//! Integration tests of the sealed store.

mod bad_input;
mod crash;
mod faults;
mod kill;
mod lifecycle;
mod support;
