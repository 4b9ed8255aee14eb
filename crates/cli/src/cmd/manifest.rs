//! `quarry manifest ...`: commands that work on manifest files without a Coordinator.
//!
//! `check` reads a manifest (JSON, or YAML as MarbleRun's CLI accepts it), decodes it as the
//! Coordinator does, applies every check, and prints each problem and each ignored key with its
//! path. The `AzureHSMSealing` rule needs the Coordinator's environment: `--env-file` supplies
//! it; without one the environment is empty, so the rule names every variable the Coordinator
//! would need.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use quarry_common::limits::{MAX_BODY_BYTES, MAX_ENV_FILE_BYTES};
use quarry_common::{EnvFile, ExitCode};
use quarry_manifest::{DecodeError, EmptyEnvironment, Environment, ManifestDocument};

/// The `manifest` command group.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum ManifestCommand {
    /// Check a manifest file and report every problem with its path.
    Check(CheckArgs),
}

/// Arguments of `quarry manifest check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The manifest, JSON or YAML.
    pub file: PathBuf,
    /// An env file (`KEY=VALUE` lines) with the Coordinator's environment, for the rules that
    /// depend on it (`AzureHSMSealing` needs the `EDG_AZURE_*` and `EDG_MAA_URL` variables).
    #[arg(long, value_name = "F")]
    pub env_file: Option<PathBuf>,
}

/// Runs a `manifest` command.
pub fn run(command: ManifestCommand, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match command {
        ManifestCommand::Check(args) => check(&args, out, err),
    }
}

fn check(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let bytes = match read_limited(&args.file, MAX_BODY_BYTES) {
        Ok(bytes) => bytes,
        Err(message) => return fail(err, ExitCode::Unreadable, &message),
    };
    let env: Box<dyn Environment> = match &args.env_file {
        None => Box::new(EmptyEnvironment),
        Some(path) => match read_env_file(path) {
            Ok(env) => Box::new(env),
            Err(message) => return fail(err, ExitCode::Unreadable, &message),
        },
    };

    let document = match ManifestDocument::from_file_bytes(&bytes) {
        Ok(document) => document,
        Err(DecodeError::Invalid(errors)) => {
            for e in &errors {
                let _ = writeln!(out, "error: {e}");
            }
            let _ = writeln!(
                err,
                "{}: invalid manifest ({} problems)",
                args.file.display(),
                errors.len()
            );
            return ExitCode::Invalid;
        }
        Err(e) => {
            let message = format!("{}: {e}", args.file.display());
            return fail(err, ExitCode::Unreadable, &message);
        }
    };
    let report = quarry_manifest::check(document.manifest(), env.as_ref());

    for warning in document.warnings().iter().chain(&report.warnings) {
        let _ = writeln!(out, "warning: {warning}");
    }
    for violation in &report.violations {
        let _ = writeln!(out, "error: {violation}");
    }
    if !report.is_valid() {
        let _ = writeln!(
            err,
            "{}: invalid manifest ({} problems)",
            args.file.display(),
            report.violations.len()
        );
        return ExitCode::Invalid;
    }
    let _ = writeln!(
        out,
        "ok: {} is valid, fingerprint {}",
        args.file.display(),
        document.fingerprint()
    );
    ExitCode::Ok
}

fn fail(err: &mut dyn Write, code: ExitCode, message: &str) -> ExitCode {
    let _ = writeln!(err, "error: {message}");
    code
}

/// Reads `path`, refusing files larger than `limit` without reading them whole.
fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    // usize always fits in u64 on supported targets.
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > limit {
        return Err(format!(
            "{} is larger than the limit of {limit} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

fn read_env_file(path: &Path) -> Result<EnvFile, String> {
    let bytes = read_limited(path, MAX_ENV_FILE_BYTES)?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not valid utf-8", path.display()))?;
    EnvFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}
