//! Quarry's public-key infrastructure: the Coordinator's root, intermediate and Marble
//! root certificate authorities, certificates for Marbles and secrets, secret generation and
//! recovery-secret encryption.
