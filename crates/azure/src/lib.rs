//! The Secure Key Release client: Entra ID credentials, Microsoft Azure Attestation,
//! Managed HSM key release, release-response verification and key unwrapping.
