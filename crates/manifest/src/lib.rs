//! The MarbleRun-compatible manifest: model, lenient decoding, validation, update rules
//! and parameter templates. Pure: no I/O, no clock, no randomness except through arguments.

pub mod template;
