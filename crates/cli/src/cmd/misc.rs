//! `quarry version` and `quarry completion SHELL`.

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use serde_json::json;

use crate::output::{Out, OutputFormat};

/// `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to write the completion script for.
    pub shell: Shell,
}

/// Prints the CLI's version.
pub fn version(format: OutputFormat, out: &mut dyn Write, err: &mut dyn Write) {
    let version = env!("CARGO_PKG_VERSION");
    let mut o = Out { format, out, err };
    o.result(
        &format!("quarry {version}"),
        json!({ "cli": version, "clientApi": "v2" }),
    );
}

/// Writes the completion script for `args.shell`.
pub fn completion(args: &CompletionArgs, out: &mut dyn Write) {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "quarry", out);
}
