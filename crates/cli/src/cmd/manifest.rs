//! `quarry manifest ...`: commands that work on manifest files without a Coordinator.
//!
//! `check` reads a manifest (JSON, or YAML as MarbleRun's CLI accepts it), decodes it as the
//! Coordinator does, applies every check, and prints each problem and each ignored key with its
//! path. The template dry run the Coordinator performs when a manifest is set runs too (once
//! the checks pass, as there), so a broken `Files` or `Env` template is reported here rather
//! than refused later. The `AzureHSMSealing` rule needs the Coordinator's environment:
//! `--env-file` supplies it; without one the environment is empty, so the rule names every
//! variable the Coordinator would need.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use quarry_common::limits::{MAX_BODY_BYTES, MAX_ENV_FILE_BYTES};
use quarry_common::{EnvFile, ExitCode};
use quarry_manifest::template::dry_run_manifest;
use quarry_manifest::{DecodeError, EmptyEnvironment, Environment, ManifestDocument, WarningKind};
use serde_json::{Value, json};

use crate::output::{OutputFormat, count};

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
pub fn run(
    command: ManifestCommand,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    match command {
        ManifestCommand::Check(args) => check(&args, format, out, err),
    }
}

/// One finding of `check`: where, which rule or kind, and what.
#[derive(Debug)]
struct Finding {
    path: String,
    code: &'static str,
    message: String,
}

impl Finding {
    fn message_with_path(&self) -> String {
        if self.path.is_empty() {
            return self.message.clone();
        }
        format!("{}: {}", self.path, self.message)
    }

    fn json(&self) -> Value {
        json!({ "path": self.path, "code": self.code, "message": self.message })
    }
}

/// Everything `check` found in a manifest that decoded far enough to be judged.
#[derive(Debug, Default)]
struct Findings {
    warnings: Vec<Finding>,
    /// Each printed as `error: <text>`; `Finding` for the JSON form.
    violations: Vec<(String, Finding)>,
    fingerprint: Option<String>,
}

fn warning_code(kind: &WarningKind) -> &'static str {
    match kind {
        WarningKind::UnknownKey => "unknown-key",
        WarningKind::IgnoredField(_) => "ignored-field",
        WarningKind::DebugPackage(_) => "debug-package",
        _ => "warning",
    }
}

fn check(
    args: &CheckArgs,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let findings = match findings(args) {
        Ok(findings) => findings,
        Err((code, message)) => return fail(format, err, code, &message),
    };
    let valid = findings.violations.is_empty();

    match format {
        OutputFormat::Text => {
            for warning in &findings.warnings {
                let _ = writeln!(out, "warning: {}", warning.message_with_path());
            }
            for (text, _) in &findings.violations {
                let _ = writeln!(out, "error: {text}");
            }
            if let Some(fingerprint) = findings.fingerprint.as_ref().filter(|_| valid) {
                let _ = writeln!(
                    out,
                    "ok: {} is valid, fingerprint {fingerprint}",
                    args.file.display()
                );
            }
        }
        OutputFormat::Json => {
            let document = json!({
                "file": args.file.display().to_string(),
                "valid": valid,
                "fingerprint": findings.fingerprint.filter(|_| valid),
                "warnings": findings.warnings.iter().map(Finding::json).collect::<Vec<_>>(),
                "violations": findings
                    .violations
                    .iter()
                    .map(|(_, f)| f.json())
                    .collect::<Vec<_>>(),
            });
            let _ = writeln!(out, "{document}");
        }
    }
    if valid {
        return ExitCode::Ok;
    }
    let summary = format!(
        "{}: invalid manifest ({})",
        args.file.display(),
        count(findings.violations.len() as u64, "problem", "problems")
    );
    match format {
        OutputFormat::Text => {
            let _ = writeln!(err, "{summary}");
        }
        OutputFormat::Json => {
            let v = json!({ "error": summary, "exitCode": ExitCode::Invalid.code() });
            let _ = writeln!(err, "{v}");
        }
    }
    ExitCode::Invalid
}

/// Reads, decodes and checks the manifest; an input that cannot be read is `Err` with its exit
/// code and message.
fn findings(args: &CheckArgs) -> Result<Findings, (ExitCode, String)> {
    let bytes = read_limited(&args.file, MAX_BODY_BYTES).map_err(|m| (ExitCode::Unreadable, m))?;
    let env: Box<dyn Environment> = match &args.env_file {
        None => Box::new(EmptyEnvironment),
        Some(path) => Box::new(read_env_file(path).map_err(|m| (ExitCode::Unreadable, m))?),
    };

    let document = match ManifestDocument::from_file_bytes(&bytes) {
        Ok(document) => document,
        Err(DecodeError::Invalid(errors)) => {
            let violations = errors
                .iter()
                .map(|e| {
                    let finding = Finding {
                        path: e.path.to_string(),
                        code: "decode",
                        message: e.message.clone(),
                    };
                    (e.to_string(), finding)
                })
                .collect();
            return Ok(Findings {
                violations,
                ..Findings::default()
            });
        }
        Err(e) => {
            return Err((
                ExitCode::Unreadable,
                format!("{}: {e}", args.file.display()),
            ));
        }
    };
    let report = quarry_manifest::check(document.manifest(), env.as_ref());
    // The Coordinator refuses a manifest whose templates fail the dry run (at manifest set,
    // with no secret values known yet), so the check reports those failures as problems too.
    // As in the Coordinator, the dry run comes after the checks pass: on a manifest that fails
    // them it would only repeat their findings (a secret of an unknown type has no value).
    let template_problems = if report.is_valid() {
        match dry_run_manifest(document.manifest(), &BTreeMap::new()) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_problems(),
        }
    } else {
        Vec::new()
    };

    let warnings = document
        .warnings()
        .iter()
        .chain(&report.warnings)
        .map(|w| Finding {
            path: w.path.to_string(),
            code: warning_code(&w.kind),
            message: w.kind.to_string(),
        })
        .collect();
    let violations = report
        .violations
        .iter()
        .map(|v| {
            let finding = Finding {
                path: v.path.to_string(),
                code: v.error.rule(),
                message: v.error.to_string(),
            };
            (v.to_string(), finding)
        })
        .chain(template_problems.iter().map(|p| {
            let finding = Finding {
                path: p.path.to_string(),
                code: "template",
                message: p.cause.to_string(),
            };
            (p.to_string(), finding)
        }))
        .collect();
    Ok(Findings {
        warnings,
        violations,
        fingerprint: Some(document.fingerprint().to_string()),
    })
}

fn fail(format: OutputFormat, err: &mut dyn Write, code: ExitCode, message: &str) -> ExitCode {
    match format {
        OutputFormat::Text => {
            let _ = writeln!(err, "error: {message}");
        }
        OutputFormat::Json => {
            let v = json!({ "error": message, "exitCode": code.code() });
            let _ = writeln!(err, "{v}");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check_json(json: &str) -> (ExitCode, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("manifest.json");
        std::fs::write(&file, json).expect("write manifest");
        let args = CheckArgs {
            file,
            env_file: None,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = check(&args, OutputFormat::Text, &mut out, &mut err);
        (code, String::from_utf8(out).expect("utf-8 output"))
    }

    fn manifest_with_env(template: &str) -> String {
        serde_json::json!({
            "Packages": {"p": {"Debug": true}},
            "Marbles": {"m": {"Package": "p", "Parameters": {"Env": {"E": template}}}},
            "Secrets": {"s": {"Type": "symmetric-key", "Size": 128}},
        })
        .to_string()
    }

    #[test]
    fn check_refuses_templates_the_dry_run_refuses() {
        let (code, out) = check_json(&manifest_with_env("{{ .Secrets.s.Private"));
        assert_eq!(code, ExitCode::Invalid, "{out}");
        assert!(
            out.contains(r#"error: Marbles["m"].Parameters.Env["E"]: template syntax error"#),
            "{out}"
        );

        let (code, out) = check_json(&manifest_with_env("{{ .Secrets.s.Private }}"));
        assert_eq!(code, ExitCode::Invalid, "{out}");
        assert!(out.contains("without an encoder"), "{out}");
    }

    #[test]
    fn check_accepts_a_template_the_dry_run_accepts() {
        let (code, out) = check_json(&manifest_with_env("{{ hex .Secrets.s.Private }}"));
        assert_eq!(code, ExitCode::Ok, "{out}");
    }

    #[test]
    fn check_runs_no_dry_run_on_a_manifest_that_fails_the_checks() {
        let mut manifest: serde_json::Value =
            serde_json::from_str(&manifest_with_env("{{ hex .Secrets.s.Private }}")).unwrap();
        manifest["Secrets"]["s"]["Type"] = "Symmetric-Key".into();
        let (code, out) = check_json(&manifest.to_string());
        assert_eq!(code, ExitCode::Invalid, "{out}");
        assert!(out.contains(r#"error: Secrets["s"].Type"#), "{out}");
        assert!(!out.contains("Parameters.Env"), "{out}");
    }
}
