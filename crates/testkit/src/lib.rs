//! Test support for Quarry's own tests, benchmarks and `quarry dev` (not published): starting the
//! real binaries on loopback and waiting for their `--ready-file`, temporary directories, and
//! fake services.

pub mod coordinator;
pub mod emulator;
pub mod pccs;
pub mod process;
