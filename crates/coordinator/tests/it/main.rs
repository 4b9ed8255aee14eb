//! Integration tests of the Coordinator.

mod api;
mod bad_input;
mod helm;
mod hsm;
mod marble;
mod tools;
mod workflow;
