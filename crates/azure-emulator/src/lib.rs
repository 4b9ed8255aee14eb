//! A local emulator of Entra ID, Microsoft Azure Attestation and Azure Managed HSM,
//! faithful to the wire protocol that Secure Key Release uses.

pub mod hsm;
