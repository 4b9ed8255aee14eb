//! Integration tests of the Coordinator.

mod api;
mod bad_input;
mod helm;
mod hsm;
mod marble;
mod metrics;
mod rbac;
mod review_client_certs;
mod secrets;
mod tools;
mod updates;
mod users;
mod workflow;
