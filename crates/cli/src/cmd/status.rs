//! `quarry status ADDR`: the Coordinator's state (`<code>: <message>`), over the pinned
//! connection (attesting first when nothing is pinned).
//!
//! When the Coordinator presents another certificate than the pinned root, the answer stays
//! exit 5, but the status read over that connection (without trusting it) says why when it
//! can: recovery mode (state 1) and the wait for a key release (state 0) serve a temporary
//! certificate, which `--trust-new-coordinator` must not pin; the Marble root means the address
//! is the Marble API.

use std::io::Write;

use clap::Args;
use quarry_common::ExitCode;
use serde_json::{Value, json};

use super::shared::{report, run_async};
use crate::attest::{ConnectOptions, field, load_pin, pinned_client};
use crate::client::{Address, Client};
use crate::failure::{Failure, Result};
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
    let pin = if args.conn.insecure {
        None
    } else {
        load_pin(&args.conn.pin_path())?
    };
    let Some((intermediate, root)) = pin else {
        // `--insecure`, or nothing pinned yet: attest first (or not at all) as every command.
        let client = pinned_client(&args.conn, &args.address, None, out).await?;
        let data = client.get("/api/v2/status").await?;
        print_status(&data, out);
        return Ok(());
    };

    // One request that sends nothing but its path, over a connection whose certificate is
    // compared with the pin after the fact: a Coordinator in recovery mode or waiting for a key
    // release serves a temporary certificate, and its status says which. When the pin does not
    // hold, the answer only shapes the message; nothing else is sent or trusted.
    let client = Client::status_probe(&args.address, root)?;
    let data = client.get("/api/v2/status").await;
    let Some(mismatch) = client.pin_mismatch() else {
        print_status(&data?, out);
        return Ok(());
    };
    let presented = client.presented_certificate().unwrap_or_default();
    let advice = match data.as_ref().ok().map(status_code) {
        Some(1) => "it reports recovery mode (state 1) and serves a temporary certificate until \
                    it is recovered: recover it with quarry recover (the status was read without \
                    trusting that certificate); do not use --trust-new-coordinator, which would \
                    pin the temporary certificate"
            .to_owned(),
        Some(0) => "it reports that it waits for an HSM key release (state 0) and serves a \
                    temporary certificate until the release succeeds: see its status message \
                    and log (the status was read without trusting that certificate); do not use \
                    --trust-new-coordinator, which would pin the temporary certificate"
            .to_owned(),
        // The Marble API insists on a client certificate, which the probe does not have.
        _ if same_key(&presented, &intermediate)
            || (data.is_err() && client.client_auth_requested()) =>
        {
            format!("it presented the Marble root; {}", client.marble_api_hint())
        }
        _ => "it was reinstalled, recovered with a new manifest, or is not the same \
              coordinator (verify it again, see --trust-new-coordinator)"
            .to_owned(),
    };
    Err(Failure::identity(format!("{}; {advice}", mismatch.message)))
}

fn status_code(data: &Value) -> i64 {
    field(data, "code").and_then(Value::as_i64).unwrap_or(-1)
}

fn print_status(data: &Value, out: &mut Out<'_>) {
    let code = status_code(data);
    let message = field(data, "message").and_then(Value::as_str).unwrap_or("");
    out.result(
        &format!("{code}: {message}"),
        json!({ "code": code, "message": message }),
    );
}

/// Whether two certificates hold the same public key: the Marble API presents the Marble
/// root, which is self-signed with the key of the Coordinator's intermediate.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let key = |der: &[u8]| {
        x509_parser::parse_x509_certificate(der)
            .ok()
            .map(|(_, cert)| cert.public_key().raw.to_vec())
    };
    matches!((key(a), key(b)), (Some(x), Some(y)) if x == y)
}
