//! `quarry manifest ...`: the whole command group. `check` is [`super::manifest`]; the others
//! talk to the Coordinator (`set`, `get`, `verify`, `log`, `update ...`) or hash a file
//! (`signature`).
//!
//! Manifests are uploaded as the exact bytes the fingerprint covers: JSON files unchanged, YAML
//! converted to MarbleRun's compact JSON with sorted keys, so two operators using either tool
//! acknowledge the same bytes.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use clap::{Args, Subcommand};
use quarry_common::ExitCode;
use quarry_manifest::ManifestDocument;
use quarry_manifest::update::{UpdateKind, check_package_update};
use serde_json::{Value, json};

use super::manifest::{CheckArgs, ManifestCommand};
use super::shared::{UserAuth, deliver, read_manifest, report, run_async};
use crate::attest::{ConnectOptions, PinMode, attested_client, field, pinned_client};
use crate::client::{Address, Client};
use crate::failure::{Failure, Result, write_file};
use crate::output::{Out, OutputFormat};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The `manifest` command group.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum ManifestGroup {
    /// Check a manifest file and report every problem with its path.
    Check(CheckArgs),
    /// Verify the Coordinator, then set its manifest (checked locally first).
    Set(SetArgs),
    /// Verify the Coordinator, then print its manifest after checking the root's signature.
    Get(GetArgs),
    /// Verify the Coordinator and that its manifest is this file (or has this fingerprint).
    Verify(VerifyArgs),
    /// Print the Coordinator's update log.
    Log(AddrArgs),
    /// Print a manifest file's fingerprint (hex SHA-256 of the bytes uploaded).
    Signature(SignatureArgs),
    /// Manifest updates.
    #[command(subcommand)]
    Update(UpdateCommand),
}

/// `manifest update ...`.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum UpdateCommand {
    /// Submit a package update or a full manifest update.
    Apply(UpdateArgs),
    /// Acknowledge the pending full update (the same manifest bytes).
    Acknowledge(UpdateArgs),
    /// Cancel the pending update.
    Cancel(AuthAddrArgs),
    /// Show the pending update.
    Get(UpdateGetArgs),
}

/// A Coordinator address and how to verify it.
#[derive(Debug, Args)]
pub struct AddrArgs {
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// `manifest set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The manifest (JSON or YAML).
    pub manifest: PathBuf,
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    /// Save the recovery secrets (`{"RecoverySecrets": {...}}`) to this file.
    #[arg(short = 'r', long, value_name = "FILE")]
    pub recoverydata: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// `manifest get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    /// Print the manifest signature (base64) instead of the manifest.
    #[arg(short = 's', long)]
    pub signature: bool,
    /// Apply the package updates of the update log to the printed manifest.
    #[arg(short = 'u', long)]
    pub display_update: bool,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "out-file", value_name = "FILE")]
    pub out_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// `manifest verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A manifest file or its hex fingerprint.
    pub manifest: String,
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// `manifest signature`.
#[derive(Debug, Args)]
pub struct SignatureArgs {
    /// The manifest (JSON or YAML).
    pub manifest: PathBuf,
}

/// `manifest update apply|acknowledge`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The update manifest (JSON or YAML).
    pub manifest: PathBuf,
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    /// Save recovery secrets returned by the update to this file.
    #[arg(short = 'r', long, value_name = "FILE")]
    pub recoverydata: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub auth: UserAuth,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// `manifest update cancel`.
#[derive(Debug, Args)]
pub struct AuthAddrArgs {
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub auth: UserAuth,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// `manifest update get`.
#[derive(Debug, Args)]
pub struct UpdateGetArgs {
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    /// Print only the users who have not acknowledged.
    #[arg(long)]
    pub missing: bool,
    /// Write the pending manifest to this file instead of standard output.
    #[arg(short = 'o', long = "out-file", value_name = "FILE")]
    pub out_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// Runs a `manifest` command.
pub fn run(
    command: ManifestGroup,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    if let ManifestGroup::Check(args) = command {
        return super::manifest::run(ManifestCommand::Check(args), format, out, err);
    }
    let result = {
        let mut o = Out { format, out, err };
        run_async(async {
            match command {
                ManifestGroup::Signature(a) => signature(&a, &mut o),
                ManifestGroup::Set(a) => set(&a, &mut o).await,
                ManifestGroup::Get(a) => get(&a, &mut o).await,
                ManifestGroup::Verify(a) => verify(&a, &mut o).await,
                ManifestGroup::Log(a) => log(&a, &mut o).await,
                ManifestGroup::Update(u) => update(u, &mut o).await,
                ManifestGroup::Check(_) => Ok(()),
            }
        })
    };
    report(format, err, result)
}

fn signature(args: &SignatureArgs, out: &mut Out<'_>) -> Result<()> {
    let document = read_manifest(&args.manifest)?;
    let fp = document.fingerprint();
    out.result(&fp, json!({ "manifestFingerprint": fp }));
    Ok(())
}

async fn set(args: &SetArgs, out: &mut Out<'_>) -> Result<()> {
    let document = read_manifest(&args.manifest)?;
    let (client, _) = attested_client(&args.conn, &args.address, None, PinMode::Pin, out).await?;
    let body = json!({ "manifest": B64.encode(document.raw()) });
    let data = client
        .post("/api/v2/manifest", Some(&body))
        .await
        .map_err(|failure| keep_issued_secrets(&args.recoverydata, failure, out))?;
    let secrets = field(&data, "RecoverySecrets")
        .cloned()
        .unwrap_or(json!({}));
    let count = secrets.as_object().map_or(0, |m| m.len());
    if let Some(path) = &args.recoverydata {
        let text = json!({ "RecoverySecrets": secrets }).to_string();
        write_file(path, text.as_bytes(), "recovery data")?;
    } else if count > 0 && out.format == OutputFormat::Text {
        out.warn("the recovery secrets are printed below; store them safely (or use -r FILE)");
        let _ = writeln!(out.out, "{}", json!({ "RecoverySecrets": secrets }));
    }
    out.result(
        &format!(
            "manifest set, fingerprint {}{}",
            document.fingerprint(),
            match (&args.recoverydata, count) {
                (Some(p), n) if n > 0 => format!("; {n} recovery secrets saved to {}", p.display()),
                _ => String::new(),
            }
        ),
        json!({ "manifestFingerprint": document.fingerprint(), "RecoverySecrets": secrets }),
    );
    Ok(())
}

/// The manifest, its signature and fingerprint, with the signature checked against the root.
struct RemoteManifest {
    raw: Vec<u8>,
    signature: Vec<u8>,
    fingerprint: String,
}

async fn fetch_manifest(client: &Client, root: &[u8]) -> Result<RemoteManifest> {
    let data = client.get("/api/v2/manifest").await?;
    let b64 = |name: &str| -> Result<Vec<u8>> {
        field(&data, name)
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| {
                Failure::invalid(format!(
                    "the coordinator's manifest answer has no base64 {name}"
                ))
            })
    };
    let raw = b64("manifest")?;
    let signature = b64("manifestSignatureRootECDSA")?;
    let fingerprint = quarry_manifest::fingerprint(&raw);
    if let Some(claimed) = field(&data, "manifestFingerprint").and_then(Value::as_str)
        && claimed != fingerprint
    {
        return Err(Failure::identity(format!(
            "the coordinator's manifest fingerprint {claimed} is not the SHA-256 of the manifest it sent ({fingerprint})"
        )));
    }
    if !root.is_empty() {
        quarry_pki::verify_manifest_signature(root, &raw, &signature).map_err(|_| {
            Failure::identity(
                "the manifest's signature does not verify with the coordinator's root certificate",
            )
        })?;
    }
    Ok(RemoteManifest {
        raw,
        signature,
        fingerprint,
    })
}

async fn get(args: &GetArgs, out: &mut Out<'_>) -> Result<()> {
    let (client, attested) =
        attested_client(&args.conn, &args.address, None, PinMode::Pin, out).await?;
    let manifest = fetch_manifest(&client, &attested.root_der).await?;
    let mut raw = manifest.raw.clone();
    if args.display_update {
        let log = update_log(&client).await?;
        raw = apply_log(&raw, &log)?;
    }
    if args.signature {
        let sig = B64.encode(&manifest.signature);
        return match &args.out_file {
            Some(p) => deliver(out, p, sig.as_bytes(), "signature file"),
            None => {
                out.result(&sig, json!({ "manifestSignatureRootECDSA": sig }));
                Ok(())
            }
        };
    }
    if let Some(p) = &args.out_file {
        return deliver(out, p, &raw, "manifest file");
    }
    match out.format {
        OutputFormat::Text => {
            let _ = out.out.write_all(&raw);
            let _ = writeln!(out.out);
        }
        OutputFormat::Json => {
            let manifest: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            out.result(
                "",
                json!({"manifest": manifest, "manifestFingerprint": manifest_fp(&manifest, &raw)}),
            );
        }
    }
    Ok(())
}

fn manifest_fp(_: &Value, raw: &[u8]) -> String {
    quarry_manifest::fingerprint(raw)
}

async fn update_log(client: &Client) -> Result<Vec<String>> {
    let data = client.get("/api/v2/update").await?;
    Ok(field(&data, "updateLog")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// The `update` of a log line, if it is a JSON object with one.
fn log_update(line: &str) -> Option<String> {
    let entry = serde_json::from_str::<Value>(line).ok()?;
    entry.get("update")?.as_str().map(str::to_owned)
}

/// Replays `SecurityVersion increased` log entries onto the manifest's packages: those since
/// the manifest was set or last replaced by a full update (`Complete Manifest updated`), which
/// takes every package, security version included, from the new manifest.
fn apply_log(raw: &[u8], log: &[String]) -> Result<Vec<u8>> {
    let mut manifest: Value = serde_json::from_slice(raw)
        .map_err(|e| Failure::invalid(format!("the coordinator's manifest is not JSON: {e}")))?;
    let since = log
        .iter()
        .rposition(|line| {
            matches!(
                log_update(line).as_deref(),
                Some("Complete Manifest updated" | "Initial manifest set")
            )
        })
        .map_or(0, |i| i + 1);
    for line in &log[since..] {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if entry.get("update").and_then(Value::as_str) != Some("SecurityVersion increased") {
            continue;
        }
        let (Some(package), Some(version)) = (
            entry.get("package").and_then(Value::as_str),
            entry.get("new version").cloned(),
        ) else {
            continue;
        };
        let packages = manifest
            .as_object_mut()
            .and_then(|m| {
                m.iter_mut()
                    .find(|(k, _)| k.eq_ignore_ascii_case("Packages"))
            })
            .and_then(|(_, v)| v.as_object_mut());
        if let Some(p) = packages
            .and_then(|p| p.get_mut(package))
            .and_then(Value::as_object_mut)
        {
            let key = p
                .keys()
                .find(|k| k.eq_ignore_ascii_case("SecurityVersion"))
                .cloned()
                .unwrap_or_else(|| "SecurityVersion".into());
            p.insert(key, version);
        }
    }
    serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Failure::invalid(format!("cannot print the manifest: {e}")))
}

async fn verify(args: &VerifyArgs, out: &mut Out<'_>) -> Result<()> {
    let is_hash = args.manifest.len() == 64 && args.manifest.chars().all(|c| c.is_ascii_hexdigit());
    let local = if is_hash {
        args.manifest.to_ascii_lowercase()
    } else {
        read_manifest(&PathBuf::from(&args.manifest))?.fingerprint()
    };
    let (client, attested) =
        attested_client(&args.conn, &args.address, None, PinMode::Pin, out).await?;
    let remote = fetch_manifest(&client, &attested.root_der).await?;
    if remote.fingerprint != local {
        return Err(Failure::invalid(format!(
            "the coordinator's manifest is {}, not {local}",
            remote.fingerprint
        )));
    }
    out.result(
        &format!("ok: the coordinator's manifest is {local} and signed by its root"),
        json!({ "verified": true, "manifestFingerprint": local }),
    );
    Ok(())
}

async fn log(args: &AddrArgs, out: &mut Out<'_>) -> Result<()> {
    let client = pinned_client(&args.conn, &args.address, None, out).await?;
    let lines = update_log(&client).await?;
    out.result(&lines.join("\n"), json!({ "updateLog": lines }));
    Ok(())
}

async fn update(command: UpdateCommand, out: &mut Out<'_>) -> Result<()> {
    match command {
        UpdateCommand::Apply(a) => update_apply(&a, out).await,
        UpdateCommand::Acknowledge(a) => update_acknowledge(&a, out).await,
        UpdateCommand::Cancel(a) => {
            let user = a.auth.load()?;
            let client = pinned_client(&a.conn, &a.address, user, out).await?;
            let data = client.post("/api/v2/update-cancel", None).await?;
            let message = field(&data, "message")
                .and_then(Value::as_str)
                .unwrap_or("update cancelled");
            out.result(message, data.clone());
            Ok(())
        }
        UpdateCommand::Get(a) => update_get(&a, out).await,
    }
}

/// Reads an update manifest: a package update is checked against the Coordinator's current
/// packages, a full update like a new manifest.
async fn read_update(path: &std::path::Path, client: &Client) -> Result<ManifestDocument> {
    let bytes = crate::failure::read_file(path, quarry_common::limits::MAX_BODY_BYTES, "manifest")?;
    let document = ManifestDocument::from_file_bytes(&bytes)
        .map_err(|e| Failure::unreadable(format!("manifest {}: {e}", path.display())))?;
    if UpdateKind::of(document.manifest()) == UpdateKind::Full {
        return read_manifest(path);
    }
    // Package updates are not in the stored manifest, only in the update log: replay them so
    // that a downgrade below an earlier update is caught here too.
    let current = fetch_manifest(client, &[]).await?;
    let current = apply_log(&current.raw, &update_log(client).await?)?;
    let current = ManifestDocument::from_json(current).map_err(|e| {
        Failure::invalid(format!("the coordinator's manifest does not decode: {e}"))
    })?;
    let violations = check_package_update(&current.manifest().packages, document.manifest());
    if let Some(first) = violations.first() {
        return Err(Failure::invalid(format!(
            "package update {} is invalid, nothing was sent: {first}",
            path.display()
        )));
    }
    Ok(document)
}

/// Keeps the recovery secrets a failed write may still have issued: a write whose outcome the
/// Coordinator could not confirm answers with them in `data`, because if the state it wrote is
/// the one a restart finds, they are the only ones that recover it. They are saved like a
/// success's (or printed, without `-r`), and the failure says where.
fn keep_issued_secrets(path: &Option<PathBuf>, mut failure: Failure, out: &mut Out<'_>) -> Failure {
    let Some(secrets) = failure
        .data
        .as_ref()
        .and_then(|data| field(data, "RecoverySecrets"))
    else {
        return failure;
    };
    let text = json!({ "RecoverySecrets": secrets }).to_string();
    let saved = path
        .as_ref()
        .map(|p| write_file(p, text.as_bytes(), "recovery data").map(|()| p));
    match saved {
        Some(Ok(p)) => {
            failure.message = format!(
                "{}; the recovery secrets it issued were saved to {}",
                failure.message,
                p.display()
            );
        }
        other => {
            if let Some(Err(not_saved)) = other {
                out.warn(&not_saved.message);
            }
            out.warn("the recovery secrets this write issued are printed below; store them safely");
            let _ = writeln!(out.out, "{text}");
        }
    }
    failure
}

/// Delivers the recovery secrets an update answered with (`recoverySecrets`: the update changed
/// the recovery keys or threshold, so the state is now shared to new secrets): saved to `-r FILE`,
/// or, without it, printed in text output as `manifest set` does (JSON output carries them in
/// its document). They are issued once; dropping them would leave the state unrecoverable.
/// Returns what to add to the result message.
fn save_recovery(path: &Option<PathBuf>, data: &Value, out: &mut Out<'_>) -> Result<String> {
    let Some(secrets) = field(data, "recoverySecrets").filter(|s| !s.is_null()) else {
        return Ok(String::new());
    };
    let count = secrets.as_object().map_or(0, serde_json::Map::len);
    let text = json!({ "RecoverySecrets": secrets }).to_string();
    if let Some(path) = path {
        write_file(path, text.as_bytes(), "recovery data")?;
        return Ok(format!(
            "; {} saved to {}",
            crate::output::count(
                u64::try_from(count).unwrap_or(u64::MAX),
                "new recovery secret",
                "new recovery secrets"
            ),
            path.display()
        ));
    }
    if out.format == OutputFormat::Text {
        out.warn(
            "the update issued new recovery secrets, printed below; store them safely (or use -r \
             FILE)",
        );
        let _ = writeln!(out.out, "{text}");
    }
    Ok(String::new())
}

fn pending_text(data: &Value) -> String {
    let missing = field(data, "missingAcknowledgments")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let users: Vec<&str> = field(data, "missingUsers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match missing {
        0 => "update applied".to_owned(),
        n => format!(
            "update pending: {} missing (users who have not acknowledged: {})",
            crate::output::count(n, "acknowledgement", "acknowledgements"),
            users.join(", ")
        ),
    }
}

async fn update_apply(args: &UpdateArgs, out: &mut Out<'_>) -> Result<()> {
    let user = args.auth.load()?;
    let client = pinned_client(&args.conn, &args.address, user, out).await?;
    let document = read_update(&args.manifest, &client).await?;
    let body = json!({ "manifest": B64.encode(document.raw()) });
    let data = client
        .post("/api/v2/update", Some(&body))
        .await
        .map_err(|failure| keep_issued_secrets(&args.recoverydata, failure, out))?;
    let saved = save_recovery(&args.recoverydata, &data, out)?;
    out.result(&format!("{}{saved}", pending_text(&data)), data.clone());
    Ok(())
}

async fn update_acknowledge(args: &UpdateArgs, out: &mut Out<'_>) -> Result<()> {
    let user = args.auth.load()?;
    let document = read_manifest(&args.manifest)?;
    let client = pinned_client(&args.conn, &args.address, user, out).await?;
    let body = json!({ "manifest": B64.encode(document.raw()) });
    let data = client
        .post("/api/v2/update-manifest", Some(&body))
        .await
        .map_err(|failure| keep_issued_secrets(&args.recoverydata, failure, out))?;
    let saved = save_recovery(&args.recoverydata, &data, out)?;
    let message = field(&data, "message")
        .and_then(Value::as_str)
        .map_or_else(|| pending_text(&data), str::to_owned);
    out.result(&format!("{message}{saved}"), data.clone());
    Ok(())
}

async fn update_get(args: &UpdateGetArgs, out: &mut Out<'_>) -> Result<()> {
    let client = pinned_client(&args.conn, &args.address, None, out).await?;
    let data = client.get("/api/v2/update-manifest").await?;
    let users: Vec<String> = field(&data, "missingUsers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if args.missing {
        out.result(&users.join("\n"), json!({ "missingUsers": users }));
        return Ok(());
    }
    let raw = field(&data, "manifest")
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| Failure::invalid("the pending update has no base64 manifest"))?;
    if let Some(p) = &args.out_file {
        return deliver(out, p, &raw, "manifest file");
    }
    let manifest: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    out.result(
        &String::from_utf8_lossy(&raw),
        json!({ "manifest": manifest, "missingUsers": users, "message": field(&data, "message") }),
    );
    Ok(())
}
