//! `quarry secret get NAME... ADDR` and `quarry secret set FILE ADDR`: user-defined and shared
//! secrets, as a user of the manifest (`--cert`/`--key`).
//!
//! An upload is decoded and checked locally first against the Coordinator's current manifest
//! (the secret exists, is user-defined, has the right kind and size), so a wrong file is
//! refused before it is sent.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use clap::{Args, Subcommand};
use quarry_common::ExitCode;
use quarry_common::limits::MAX_BODY_BYTES;
use quarry_manifest::ManifestDocument;
use quarry_manifest::update::{check_secret_upload, parse_secret_upload_v1};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::shared::{UserAuth, deliver, report, run_async};
use crate::attest::{ConnectOptions, field, pinned_client};
use crate::client::Address;
use crate::failure::{Failure, Result, read_file};
use crate::output::{Out, OutputFormat};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `secret ...`.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum SecretCommand {
    /// Read secrets (JSON, as the Coordinator returns them).
    Get(GetArgs),
    /// Set user-defined secrets from a JSON map of `{"Cert", "Private", "Key"}` or a PEM file.
    Set(SetArgs),
}

/// `secret get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Secret names.
    #[arg(required = true, num_args = 1..)]
    pub names: Vec<String>,
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    /// Write the secrets to this file instead of standard output.
    #[arg(short = 'o', long = "out-file", value_name = "FILE")]
    pub out_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub auth: UserAuth,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// `secret set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// JSON map name → `{"Cert", "Private", "Key"}` (base64), or with `--from-pem` a PEM file
    /// holding a certificate and its private key.
    pub file: PathBuf,
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    /// Read FILE as PEM and set it as the certificate secret NAME.
    #[arg(long, value_name = "NAME")]
    pub from_pem: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub auth: UserAuth,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// Runs a `secret` command.
pub fn run(
    command: SecretCommand,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let result = {
        let mut o = Out { format, out, err };
        run_async(async {
            match command {
                SecretCommand::Get(a) => get(&a, &mut o).await,
                SecretCommand::Set(a) => set(&a, &mut o).await,
            }
        })
    };
    report(format, err, result)
}

async fn get(args: &GetArgs, out: &mut Out<'_>) -> Result<()> {
    let user = args.auth.load()?;
    let client = pinned_client(&args.conn, &args.address, user, out).await?;
    let query: Vec<String> = args
        .names
        .iter()
        .map(|n| format!("s={}", percent_encode(n)))
        .collect();
    let data = client
        .get(&format!("/api/v2/secrets?{}", query.join("&")))
        .await?;
    let secrets = field(&data, "secrets").cloned().unwrap_or(Value::Null);
    let text = Zeroizing::new(serde_json::to_string_pretty(&secrets).unwrap_or_default() + "\n");
    match &args.out_file {
        Some(p) => deliver(out, p, text.as_bytes(), "secrets file"),
        None => {
            match out.format {
                OutputFormat::Text => {
                    let _ = out.out.write_all(text.as_bytes());
                }
                OutputFormat::Json => out.result("", json!({ "secrets": secrets })),
            }
            Ok(())
        }
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The upload map from a PEM file: the first certificate and the private key.
fn from_pem(name: &str, path: &std::path::Path) -> Result<Value> {
    let text = Zeroizing::new(read_file(path, MAX_BODY_BYTES, "pem file")?);
    let blocks = pem::parse_many(&*text)
        .map_err(|e| Failure::unreadable(format!("pem file {}: {e}", path.display())))?;
    let cert = blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| {
            Failure::unreadable(format!("pem file {} holds no CERTIFICATE", path.display()))
        })?;
    let mut entry = Map::new();
    entry.insert("Cert".into(), B64.encode(cert.contents()).into());
    if let Some(key) = blocks.iter().find(|b| b.tag().ends_with("PRIVATE KEY")) {
        if key.tag() != "PRIVATE KEY" {
            return Err(Failure::unreadable(format!(
                "pem file {}: the key is {:?}; convert it to PKCS#8 (\"PRIVATE KEY\")",
                path.display(),
                key.tag()
            )));
        }
        entry.insert("Private".into(), B64.encode(key.contents()).into());
    }
    let mut map = Map::new();
    map.insert(name.to_owned(), Value::Object(entry));
    Ok(Value::Object(map))
}

async fn set(args: &SetArgs, out: &mut Out<'_>) -> Result<()> {
    let user = args.auth.load()?;
    let map = match &args.from_pem {
        Some(name) => from_pem(name, &args.file)?,
        None => {
            let bytes = Zeroizing::new(read_file(&args.file, MAX_BODY_BYTES, "secrets file")?);
            serde_json::from_slice(&bytes).map_err(|e| {
                Failure::unreadable(format!("secrets file {}: {e}", args.file.display()))
            })?
        }
    };
    let bytes = Zeroizing::new(serde_json::to_vec(&map).unwrap_or_default());
    let (upload, _) = parse_secret_upload_v1(&bytes).map_err(|e| {
        Failure::invalid(format!(
            "secrets file {} is invalid, nothing was sent: {e}",
            args.file.display()
        ))
    })?;

    let client = pinned_client(&args.conn, &args.address, user, out).await?;
    let manifest = client.get("/api/v2/manifest").await?;
    let raw = field(&manifest, "manifest")
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| {
            Failure::invalid("the coordinator's manifest answer has no base64 manifest")
        })?;
    let current = ManifestDocument::from_json(raw).map_err(|e| {
        Failure::invalid(format!("the coordinator's manifest does not decode: {e}"))
    })?;
    if let Err(violations) = check_secret_upload(&current.manifest().secrets, &upload) {
        let first = violations
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(Failure::invalid(format!(
            "secrets file {} does not fit the manifest, nothing was sent: {first}",
            args.file.display()
        )));
    }
    client
        .post("/api/v2/secrets", Some(&json!({ "secrets": map })))
        .await?;
    let names: Vec<&String> = upload.keys().collect();
    out.result(
        &format!(
            "set {}: {}",
            crate::output::count(names.len() as u64, "secret", "secrets"),
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        json!({ "set": names }),
    );
    Ok(())
}
