//! Pieces the Coordinator commands share: the user's client certificate flags, reading a
//! manifest for upload (decoded and checked locally first), and running a command's future.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use quarry_common::ExitCode;
use quarry_common::limits::MAX_BODY_BYTES;
use quarry_manifest::{CheckError, DecodeError, ManifestDocument};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::failure::{Failure, Result, read_file};
use crate::output::{Out, OutputFormat};
use crate::tls::ClientIdentity;

/// TLS client authentication as a user of the manifest (`--cert`/`--key`, PEM).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "User authentication")]
pub struct UserAuth {
    /// The user's certificate (PEM), as listed in the manifest's Users.
    #[arg(short = 'c', long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of that certificate (PEM, PKCS#8, PKCS#1 or SEC1).
    #[arg(short = 'k', long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl UserAuth {
    /// The client identity, checked for a matching key; `None` without flags.
    pub fn load(&self) -> Result<Option<ClientIdentity>> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        let cert_pem = read_file(cert, MAX_BODY_BYTES, "certificate")?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Failure::unreadable(format!("certificate {}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(Failure::unreadable(format!(
                "certificate {} holds no PEM certificate",
                cert.display()
            )));
        }
        let key_pem = zeroize::Zeroizing::new(read_file(key, MAX_BODY_BYTES, "private key")?);
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| Failure::unreadable(format!("private key {}: {e}", key.display())))?;
        let provider = crate::tls::provider();
        rustls::sign::CertifiedKey::from_der(chain.clone(), key_der.clone_key(), &provider)
            .map_err(|e| {
                Failure::invalid(format!(
                    "the private key {} does not match the certificate {}: {e}",
                    key.display(),
                    cert.display()
                ))
            })?;
        Ok(Some(ClientIdentity {
            chain,
            key: key_der,
        }))
    }
}

/// Reads a manifest (JSON, or YAML converted to MarbleRun's compact sorted JSON) and checks it
/// as the Coordinator will, so that an invalid manifest is never uploaded. The
/// `AzureHSMSealing` environment rule is left to the Coordinator, whose environment the CLI
/// does not know.
pub fn read_manifest(path: &Path) -> Result<ManifestDocument> {
    let bytes = read_file(path, MAX_BODY_BYTES, "manifest")?;
    let document = match ManifestDocument::from_file_bytes(&bytes) {
        Ok(d) => d,
        Err(DecodeError::Invalid(errors)) => {
            return Err(invalid_manifest(
                path,
                errors.iter().map(ToString::to_string).collect(),
            ));
        }
        Err(e) => {
            return Err(Failure::unreadable(format!(
                "manifest {}: {e}",
                path.display()
            )));
        }
    };
    let report = quarry_manifest::check(document.manifest(), &|_: &str| None);
    let mut problems: Vec<String> = report
        .violations
        .iter()
        .filter(|v| !matches!(v.error, CheckError::MissingHsmEnvironment(_)))
        .map(ToString::to_string)
        .collect();
    if problems.is_empty()
        && let Err(errors) =
            quarry_manifest::template::dry_run_manifest(document.manifest(), &BTreeMap::new())
    {
        problems.push(format!("template dry run: {errors}"));
    }
    if !problems.is_empty() {
        return Err(invalid_manifest(path, problems));
    }
    Ok(document)
}

fn invalid_manifest(path: &Path, problems: Vec<String>) -> Failure {
    let more = match problems.len() {
        1 => String::new(),
        n => format!(" (and {} more; see quarry manifest check)", n - 1),
    };
    Failure::invalid(format!(
        "manifest {} is invalid, nothing was sent: {}{more}",
        path.display(),
        problems[0]
    ))
}

/// Runs a command's future on a single-threaded runtime (the futures borrow the output
/// streams, so they need not be `Send`).
pub fn run_async<F>(future: F) -> Result<()>
where
    F: Future<Output = Result<()>>,
{
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(future),
        Err(e) => Err(Failure::invalid(format!(
            "cannot start the async runtime: {e}"
        ))),
    }
}

/// Prints a failure (if any) and returns its exit code.
pub fn report(format: OutputFormat, err: &mut dyn Write, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::Ok,
        Err(f) => {
            match format {
                OutputFormat::Text => {
                    let _ = writeln!(err, "error: {}", f.message);
                }
                OutputFormat::Json => {
                    let v = json!({"error": f.message, "exitCode": f.code.code()});
                    let _ = writeln!(err, "{v}");
                }
            }
            f.code
        }
    }
}

/// Writes `bytes` to `path`, or to standard output when `path` is `-`.
pub fn deliver(out: &mut Out<'_>, path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    if path == Path::new("-") {
        let _ = out.out.write_all(bytes);
        return Ok(());
    }
    crate::failure::write_file(path, bytes, what)
}
