//! One module per command group. A group module defines its clap `Subcommand` enum and a
//! `run` function that returns the exit code.

pub mod manifest;
