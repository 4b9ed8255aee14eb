//! Marble side of activation: obtains a certificate, secrets and configuration from the
//! Coordinator, then starts the real program with them.
