//! The `quarry` command line: argument parsing and dispatch to one module per command group
//! (`cmd::manifest`, ...). Every command writes its results to the `out` stream and its
//! failures to the `err` stream it is given, and returns a [`quarry_common::ExitCode`], so the
//! whole tool can be tested without a process.
//!
//! Around the commands: [`attest`] verifies the Coordinator and pins its root certificate,
//! [`tls`] pins that certificate in every later handshake, [`client`] speaks the Client API's
//! JSend, [`failure`] maps every failure to one line and an exit code, and [`output`] prints
//! text or JSON (`--output json`) and progress spinners.

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, Subcommand};
use quarry_common::ExitCode;

pub mod attest;
pub mod client;
pub mod cmd;
pub mod dev;
pub mod failure;
pub mod output;
pub mod tls;

use output::OutputFormat;

/// Command-line tool for operating a Quarry (MarbleRun-compatible) Coordinator.
#[derive(Debug, Parser)]
#[command(name = "quarry", version, about, propagate_version = true)]
pub struct Cli {
    /// Result format: text, or one JSON document on standard output (errors as JSON on
    /// standard error).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,
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
    Manifest(cmd::manifest_ops::ManifestGroup),
    /// Show the Coordinator's state.
    Status(cmd::status::StatusArgs),
    /// Upload a recovery secret to a Coordinator in recovery mode.
    Recover(cmd::recover::RecoverArgs),
    /// Save the Coordinator's CA certificates after verifying it.
    #[command(subcommand)]
    Certificate(cmd::certificate::CertificateCommand),
    /// Read or set secrets.
    #[command(subcommand)]
    Secret(cmd::secret::SecretCommand),
    /// Azure Managed HSM helpers.
    #[command(subcommand)]
    Hsm(cmd::hsm::HsmCommand),
    /// Print the CLI's version.
    Version,
    /// Print a shell completion script.
    Completion(cmd::misc::CompletionArgs),
    /// Start a complete local deployment (emulator, Coordinator, sample Marble) with HSM sealing.
    Dev(dev::DevArgs),
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
    let format = cli.output;
    match cli.command {
        Command::Manifest(command) => cmd::manifest_ops::run(command, format, out, err),
        Command::Status(args) => cmd::status::run(args, format, out, err),
        Command::Recover(args) => cmd::recover::run(args, format, out, err),
        Command::Certificate(command) => cmd::certificate::run(command, format, out, err),
        Command::Secret(command) => cmd::secret::run(command, format, out, err),
        Command::Hsm(command) => cmd::hsm::run(command, format, out, err),
        Command::Version => {
            cmd::misc::version(format, out, err);
            ExitCode::Ok
        }
        Command::Completion(args) => {
            let result = cmd::misc::completion(&args, out);
            cmd::shared::report(format, err, result)
        }
        Command::Dev(args) => dev::run(&args, out, err),
    }
}
