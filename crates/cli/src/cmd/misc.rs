//! `quarry version` and `quarry completion SHELL`.

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use serde_json::json;

use crate::failure::{Failure, Result};
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

/// Writes the completion script for `args.shell`. The script is generated into memory first,
/// because the generator panics when its writer fails; a reader that closes the pipe early
/// (`quarry completion bash | head -1`) has taken what it wanted, so that is success.
pub fn completion(args: &CompletionArgs, out: &mut dyn Write) -> Result<()> {
    let mut command = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "quarry", &mut script);
    match out.write_all(&script).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::invalid(format!(
            "cannot write the {} completion script: {e}",
            args.shell
        ))),
        _ => Ok(()),
    }
}
