//! The Quarry Coordinator: a MarbleRun-compatible control plane that attests Marbles, holds the
//! deployment's manifest, hands out secrets and certificates, and keeps its state sealed.
//!
//! Modules: [`config`] reads the `EDG_*` variables; [`core`] is the state machine with the
//! sealed store, the CA, manifest setting and recovery; [`api`] is the Client API (one module
//! per endpoint group); [`marble`] is the Marble API (gRPC activation); [`coordinator`] starts
//! everything; [`tls`] and [`server`] are the transport of both APIs; [`jsend`] is the Client
//! API's envelope.

pub mod api;
pub mod config;
pub mod coordinator;
pub mod core;
pub mod hsm;
pub mod jsend;
pub mod marble;
pub mod metrics;
pub mod server;
pub mod tls;
pub mod users;

pub use coordinator::{Coordinator, StartError};
