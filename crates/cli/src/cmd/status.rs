//! `quarry status ADDR`: the Coordinator's state (`<code>: <message>`), over the pinned
//! connection (attesting first when nothing is pinned).

use std::io::Write;

use clap::Args;
use quarry_common::ExitCode;
use serde_json::{Value, json};

use super::shared::{report, run_async};
use crate::attest::{ConnectOptions, field, pinned_client};
use crate::client::Address;
use crate::failure::Result;
use crate::output::{Out, OutputFormat};

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// Runs `status`.
pub fn run(
    args: StatusArgs,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let result = {
        let mut o = Out { format, out, err };
        run_async(status(&args, &mut o))
    };
    report(format, err, result)
}

async fn status(args: &StatusArgs, out: &mut Out<'_>) -> Result<()> {
    let client = pinned_client(&args.conn, &args.address, None, out).await?;
    let data = client.get("/api/v2/status").await?;
    let code = field(&data, "code").and_then(Value::as_i64).unwrap_or(-1);
    let message = field(&data, "message")
        .and_then(Value::as_str)
        .unwrap_or("");
    out.result(
        &format!("{code}: {message}"),
        json!({ "code": code, "message": message }),
    );
    Ok(())
}
