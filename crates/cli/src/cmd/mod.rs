//! One module per command group. A group module defines its clap `Subcommand` enum and a
//! `run` function that returns the exit code.

pub mod certificate;
pub mod hsm;
pub mod manifest;
pub mod manifest_ops;
pub mod misc;
pub mod recover;
pub mod secret;
pub mod shared;
pub mod status;
