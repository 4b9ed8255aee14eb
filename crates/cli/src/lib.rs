//! The `quarry` command line: argument parsing and dispatch to one module per command group
//! (`cmd::manifest`, ...). Every command writes its results to the `out` stream and its
//! failures to the `err` stream it is given, and returns a [`quarry_common::ExitCode`], so the
//! whole tool can be tested without a process.

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, Subcommand};
use quarry_common::ExitCode;

pub mod cmd;

/// Command-line tool for operating a Quarry (MarbleRun-compatible) Coordinator.
#[derive(Debug, Parser)]
#[command(name = "quarry", version, about, propagate_version = true)]
pub struct Cli {
    /// The command group.
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Work with manifests.
    #[command(subcommand)]
    Manifest(cmd::manifest::ManifestCommand),
}

/// Parses `args` (the first being the program name) and runs the command.
pub fn main_with_args<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` arrive here too; clap knows which stream they belong on.
            let rendered = e.render().to_string();
            if e.use_stderr() {
                let _ = write!(err, "{rendered}");
                return ExitCode::Usage;
            }
            let _ = write!(out, "{rendered}");
            return ExitCode::Ok;
        }
    };
    run(cli, out, err)
}

/// Runs a parsed command line.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match cli.command {
        Command::Manifest(command) => cmd::manifest::run(command, out, err),
    }
}
