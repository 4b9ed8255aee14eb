//! The emulated Managed HSM: keys with release policies, local RBAC, key release with wrapping
//! for the requested algorithm, and release responses signed as the real service signs them.
