//! The Quarry Coordinator: a MarbleRun-compatible control plane that attests Marbles, holds the
//! deployment's manifest, hands out secrets and certificates, and keeps its state sealed.
//!
//! Modules: [`config`] reads the `EDG_*` variables; [`tls`] and [`server`] are the transport of
//! both APIs; [`jsend`] is the Client API's envelope.

pub mod config;
pub mod jsend;
pub mod server;
pub mod tls;
