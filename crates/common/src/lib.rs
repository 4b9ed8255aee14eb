//! Conventions that every Quarry binary and several libraries share, so that they are written
//! once: the `KEY=VALUE` env-file format, the `--ready-file` handshake used by tests and
//! `quarry dev`, the size and nesting limits of the APIs and the CLI, the CLI's exit codes, the
//! path notation that errors use to point into documents (`Marbles["web"].Package`), when log
//! output may be coloured, and the base64 dialect of MarbleRun's Go JSON.
//!
//! These belong to no single component: the emulator writes env files that the Coordinator, the
//! CLI and the tests read, and the manifest crate, the Client API and the CLI all report errors
//! with the same paths.

pub mod envfile;
pub mod exit;
pub mod go;
pub mod limits;
pub mod log;
pub mod path;
pub mod ready;

pub use envfile::{EnvFile, EnvFileError};
pub use exit::ExitCode;
pub use path::DocPath;
