//! Operator subcommands of the emulated Managed HSM, mirroring the setup steps of the Managed
//! HSM guide (create the HSM, assign roles, create a key with a release policy), and
//! `provision`, which does them all and writes the env file the Coordinator reads.
//!
//! They work on the state directory directly, so they run with or without a server; a running
//! server sees their changes at its next request. Their output is JSON, shaped like what `az`
//! prints for the same step.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use quarry_common::EnvFile;
use quarry_skr_policy::ReleasePolicy;
use serde_json::{Value, json};

use super::keys::{AttributeParams, CreateParams, PolicyParams};
use super::{Caller, Hsm, Role};
use crate::ca::Ca;
use crate::entra::Entra;
use crate::jose::b64url;
use crate::maa::Maa;
use crate::persist::StateDir;

/// `hsm` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum HsmCommand {
    /// Name the HSM and record its administrators (`az keyvault create --hsm-name`).
    Create {
        /// The HSM's name.
        #[arg(long = "hsm-name")]
        hsm_name: String,
        /// Object ids of the administrators.
        #[arg(long, num_args = 0..)]
        administrators: Vec<String>,
    },
    /// Show the HSM's name, URL and administrators (`az keyvault show`).
    Show,
    /// Assign a role (`az keyvault role assignment create`).
    RoleAssign {
        /// The principal: an object id or an application id.
        #[arg(long, visible_alias = "assignee-object-id")]
        assignee: String,
        /// "Managed HSM Crypto User" or "Managed HSM Crypto Service Release User" (or its id).
        #[arg(long)]
        role: String,
        /// `/`, `/keys` or `/keys/NAME`.
        #[arg(long, default_value = "/")]
        scope: String,
        /// `User`, `Group` or `ServicePrincipal` (accepted as `az` does; not checked).
        #[arg(long)]
        assignee_principal_type: Option<String>,
        /// The HSM's name; if given, it must be this HSM's.
        #[arg(long)]
        hsm_name: Option<String>,
    },
    /// List role assignments (`az keyvault role assignment list`).
    RoleList,
    /// Create a key, or a new version of it (`az keyvault key create`).
    KeyCreate(KeyCreateArgs),
    /// Show a key without its material (`az keyvault key show`).
    KeyShow {
        /// The key's name.
        #[arg(long)]
        name: String,
        /// A version; the latest if absent.
        #[arg(long)]
        version: Option<String>,
    },
    /// Do all of the above for the guide's setup and write the Coordinator's env file.
    Provision(ProvisionArgs),
}

/// Arguments of `hsm key-create`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyCreateArgs {
    /// The key's name.
    #[arg(long)]
    pub name: String,
    /// `oct-HSM`, `RSA-HSM` or `EC-HSM` (any case).
    #[arg(long, default_value = "oct-HSM")]
    pub kty: String,
    /// Size in bits (oct: 128/192/256, RSA: 2048/3072/4096).
    #[arg(long)]
    pub size: Option<u32>,
    /// EC curve (`P-256`, `P-384`, `P-521`, `P-256K`).
    #[arg(long)]
    pub curve: Option<String>,
    /// Permitted operations.
    #[arg(long, num_args = 1..)]
    pub ops: Vec<String>,
    /// Make the key exportable (`--exportable` or `--exportable true`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub exportable: bool,
    /// The release policy: a file (`policy.json` or `@policy.json`) or inline JSON.
    #[arg(long)]
    pub policy: Option<String>,
    /// Make the release policy immutable.
    #[arg(long)]
    pub immutable: bool,
    /// The HSM's name; if given, it must be this HSM's.
    #[arg(long)]
    pub hsm_name: Option<String>,
}

/// Arguments of `hsm provision`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionArgs {
    /// The emulator's URL as the Coordinator reaches it (`https://localhost:PORT`); the
    /// `--emulator-url` of `hsm` if absent.
    #[arg(long)]
    pub url: Option<String>,
    /// The release policy file (its authority becomes the MAA issuer).
    #[arg(long)]
    pub policy: String,
    /// Where to write the env file.
    #[arg(long)]
    pub env_file: PathBuf,
    /// The HSM's name.
    #[arg(long, default_value = "MarbleRunHSM")]
    pub hsm_name: String,
    /// The key's name.
    #[arg(long, default_value = "marblerun-skr-key")]
    pub key_name: String,
    /// The display name of the Coordinator's service principal.
    #[arg(long, default_value = "marblerun-coordinator-hsm-sp")]
    pub sp_name: String,
}

/// The host of an `https://host[:port]` URL.
fn host_of(url: &str) -> anyhow::Result<String> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("invalid url {url:?}"))?;
    if uri.scheme_str() != Some("https") {
        bail!("invalid url {url:?}: the emulator is reached over https");
    }
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| anyhow!("invalid url {url:?}: no host"))
}

fn open_hsm(state_dir: &Path, base_url: &str) -> anyhow::Result<Hsm> {
    let state = StateDir::open(state_dir)?;
    let ca = Ca::open(&state).context("opening the emulator's ca")?;
    Ok(Hsm::open(state_dir, &host_of(base_url)?, &ca)?)
}

/// Reads a policy argument: inline JSON, or a file path with an optional leading `@`.
fn read_policy(arg: &str) -> anyhow::Result<(Vec<u8>, ReleasePolicy)> {
    let bytes = if arg.trim_start().starts_with('{') {
        arg.as_bytes().to_vec()
    } else {
        let path = arg.strip_prefix('@').unwrap_or(arg);
        std::fs::read(path).with_context(|| format!("reading the policy file {path}"))?
    };
    let policy = ReleasePolicy::from_json(&bytes).with_context(|| format!("policy {arg}"))?;
    Ok((bytes, policy))
}

/// Refuses a `--hsm-name` that is not this HSM's, so a command meant for another HSM fails.
fn check_hsm_name(hsm: &Hsm, name: Option<&str>) -> anyhow::Result<()> {
    let info = hsm.info()?;
    match name {
        Some(name) if !name.eq_ignore_ascii_case(&info.name) => {
            bail!(
                "no HSM named {name:?}: this emulator's HSM is {:?}",
                info.name
            )
        }
        _ => Ok(()),
    }
}

fn create_key(hsm: &Hsm, base_url: &str, args: &KeyCreateArgs) -> anyhow::Result<Value> {
    check_hsm_name(hsm, args.hsm_name.as_deref())?;
    let policy = match &args.policy {
        Some(arg) => Some(read_policy(arg)?.0),
        None if args.immutable => bail!("--immutable needs --policy"),
        None => None,
    };
    let params = CreateParams {
        kty: Some(args.kty.clone()),
        key_size: args.size,
        crv: args.curve.clone(),
        key_ops: (!args.ops.is_empty()).then(|| args.ops.clone()),
        attributes: Some(AttributeParams {
            exportable: Some(args.exportable),
            ..Default::default()
        }),
        release_policy: policy.map(|bytes| PolicyParams {
            data: Some(b64url(&bytes)),
            immutable: args.immutable.then_some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    hsm.create_key(&Caller::Operator, base_url, &args.name, &params)
        .map_err(|e| anyhow!("creating key {}: {} ({})", args.name, e.message, e.code))
}

/// Runs an `hsm` subcommand against the state directory; `base_url` is the emulator's URL, for
/// key ids and the HSM's host name. Returns what to print.
pub fn run(state_dir: &Path, base_url: &str, command: &HsmCommand) -> anyhow::Result<Value> {
    let hsm = || open_hsm(state_dir, base_url);
    match command {
        HsmCommand::Provision(args) => provision(state_dir, base_url, args),
        HsmCommand::Create {
            hsm_name,
            administrators,
        } => {
            let info = hsm()?.create(hsm_name, administrators)?;
            Ok(describe(&info, base_url))
        }
        HsmCommand::Show => Ok(describe(&hsm()?.info()?, base_url)),
        HsmCommand::RoleAssign {
            assignee,
            role,
            scope,
            assignee_principal_type: _,
            hsm_name,
        } => {
            let role = Role::parse(role).map_err(|e| anyhow!(e))?;
            let hsm = hsm()?;
            check_hsm_name(&hsm, hsm_name.as_deref())?;
            let a = hsm.assign_role(assignee, role, scope)?;
            Ok(assignment_json(&a))
        }
        HsmCommand::RoleList => Ok(Value::Array(
            hsm()?.assignments()?.iter().map(assignment_json).collect(),
        )),
        HsmCommand::KeyCreate(args) => create_key(&hsm()?, base_url, args),
        HsmCommand::KeyShow { name, version } => hsm()?
            .get_key(&Caller::Operator, base_url, name, version.as_deref())
            .map_err(|e| anyhow!("{} ({})", e.message, e.code)),
    }
}

fn describe(info: &super::HsmInfo, base_url: &str) -> Value {
    json!({
        "name": info.name,
        "properties": {
            "hsmUri": format!("{}/", base_url.trim_end_matches('/')),
            "initialAdminObjectIds": info.administrators,
        },
        "type": "Microsoft.KeyVault/managedHSMs",
    })
}

fn assignment_json(a: &super::Assignment) -> Value {
    json!({
        "id": a.id,
        "principalId": a.principal_id,
        "roleName": a.role.name(),
        "roleDefinitionId": format!("Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/{}", a.role.id()),
        "scope": a.scope,
    })
}

/// Sets up the guide's steps 2 to 8 (for the emulator at `args.url`, else `base_url`) and writes the Coordinator's env file: names the HSM, sets
/// the MAA issuer to the policy's authority (so the guide's `policy.json` works unchanged
/// against loopback), creates the exportable `oct-HSM` key with the policy, creates the
/// Coordinator's service principal and gives it "Managed HSM Crypto Service Release User" on
/// the key. The env file (mode 0600: it holds the client secret) has every `EDG_*` variable the
/// Coordinator needs plus `QUARRY_AZURE_CA_FILE` and `EDG_AZURE_AUTHORITY_HOST`.
pub fn provision(state_dir: &Path, base_url: &str, args: &ProvisionArgs) -> anyhow::Result<Value> {
    let url = args
        .url
        .as_deref()
        .unwrap_or(base_url)
        .trim_end_matches('/')
        .to_owned();
    let (_, policy) = read_policy(&args.policy)?;
    let authority = policy
        .any_of
        .first()
        .map(|s| s.authority.clone())
        .ok_or_else(|| anyhow!("the policy names no authority"))?;
    if policy.any_of.iter().any(|s| s.authority != authority) {
        tracing::warn!(issuer = %authority, "the policy names several authorities; the emulated maa issues as the first");
    }

    let state = StateDir::open(state_dir)?;
    let hsm = open_hsm(state_dir, &url)?;
    hsm.create(&args.hsm_name, &[])?;
    Maa::set_issuer(&state, &authority).context("setting the maa issuer")?;
    let key = create_key(
        &hsm,
        &url,
        &KeyCreateArgs {
            name: args.key_name.clone(),
            kty: "oct-HSM".into(),
            size: Some(256),
            curve: None,
            ops: Vec::new(),
            exportable: true,
            policy: Some(args.policy.clone()),
            immutable: false,
            hsm_name: None,
        },
    )?;
    let entra = Entra::open(&state).context("opening the emulated entra id tenant")?;
    let sp = entra
        .create_service_principal(&args.sp_name)
        .context("creating the service principal")?;
    hsm.assign_role(
        &sp.object_id,
        Role::CryptoServiceReleaseUser,
        &format!("/keys/{}", args.key_name),
    )?;

    let ca_file = std::path::absolute(state.file("ca.pem")).context("resolving the ca file")?;
    let mut env = EnvFile::default();
    env.set("EDG_AZURE_CLIENT_ID", sp.app_id.clone());
    env.set("EDG_AZURE_CLIENT_SECRET", sp.password.to_string());
    env.set("EDG_AZURE_TENANT_ID", sp.tenant.clone());
    env.set("EDG_AZURE_AUTHORITY_HOST", url.clone());
    env.set("EDG_AZURE_HSM_KEY_NAME", args.key_name.clone());
    env.set("EDG_AZURE_HSM_KEY_VERSION", String::new());
    env.set("EDG_AZURE_HSM_VAULT_URL", url.clone());
    env.set("EDG_MAA_URL", url.clone());
    env.set("QUARRY_AZURE_CA_FILE", ca_file.display().to_string());
    let text = zeroize::Zeroizing::new(env.render());
    write_private(&args.env_file, text.as_bytes())?;

    Ok(json!({
        "envFile": args.env_file.display().to_string(),
        "hsm": args.hsm_name,
        "vaultUrl": url,
        "maaIssuer": authority,
        "key": key["key"]["kid"],
        "servicePrincipal": {"appId": sp.app_id, "id": sp.object_id, "tenant": sp.tenant},
        "role": Role::CryptoServiceReleaseUser.name(),
    }))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
