//! Integration tests of the Coordinator.

mod api;
mod bad_input;
mod helm;
mod tools;
mod workflow;
