//! `quarry certificate root|intermediate|chain ADDR`: verify the Coordinator and save its CA
//! certificates as PEM (MarbleRun's default file names; `-o -` prints them).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use quarry_common::ExitCode;
use quarry_pki::ca::certificate_pem;
use serde_json::json;

use super::shared::{deliver, report, run_async};
use crate::attest::{ConnectOptions, PinMode, attest};
use crate::client::Address;
use crate::failure::Result;
use crate::output::{Out, OutputFormat};

/// `certificate ...`.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum CertificateCommand {
    /// The root CA certificate (the Client API's TLS certificate).
    Root(CertArgs),
    /// The intermediate CA certificate (issuer of Marble certificates).
    Intermediate(CertArgs),
    /// Intermediate then root.
    Chain(CertArgs),
}

/// Arguments of every `certificate` command.
#[derive(Debug, Args)]
pub struct CertArgs {
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    /// Where to save the PEM (`-` for standard output) [default: marblerunRootCA.crt,
    /// marblerunIntermediateCA.crt or marblerunChainCA.crt].
    #[arg(short = 'o', long = "out-file", value_name = "FILE")]
    pub out_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// Runs a `certificate` command.
pub fn run(
    command: CertificateCommand,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let result = {
        let mut o = Out { format, out, err };
        run_async(certificate(command, &mut o))
    };
    report(format, err, result)
}

async fn certificate(command: CertificateCommand, out: &mut Out<'_>) -> Result<()> {
    let (args, which, default) = match &command {
        CertificateCommand::Root(a) => (a, "root", "marblerunRootCA.crt"),
        CertificateCommand::Intermediate(a) => (a, "intermediate", "marblerunIntermediateCA.crt"),
        CertificateCommand::Chain(a) => (a, "chain", "marblerunChainCA.crt"),
    };
    let attested = attest(&args.conn, &args.address, PinMode::Pin, out).await?;
    let pem = match which {
        "root" => certificate_pem(&attested.root_der),
        "intermediate" => certificate_pem(&attested.intermediate_der),
        _ => certificate_pem(&attested.intermediate_der) + &certificate_pem(&attested.root_der),
    };
    let path = args
        .out_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(default));
    deliver(out, &path, pem.as_bytes(), "certificate file")?;
    if path != std::path::Path::new("-") {
        out.result(
            &format!("saved the {which} certificate to {}", path.display()),
            json!({ "certificate": which, "file": path.display().to_string(), "pem": pem }),
        );
    }
    Ok(())
}
