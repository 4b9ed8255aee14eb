//! Integration tests of the Coordinator.

mod activation;
mod api;
mod bad_input;
mod counter;
mod helm;
mod hsm;
mod hsm_failures;
mod marble;
mod metrics;
mod rbac;
mod review11_metrics;
mod review11_restarts;
mod review11_secrets;
mod review11_updates;
mod review11_users;
mod review_client_certs;
mod review_logs;
mod review_recovery;
mod review_restarts;
mod review_startup;
mod secrets;
mod sign_quote;
mod tools;
mod updates;
mod users;
mod workflow;
