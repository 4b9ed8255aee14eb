//! The Coordinator's sealed state: data key, sealed key, file format, atomic commits,
//! snapshot transactions and key-wrapping layers.
