//! The `quarry-azure-emulator` command line: `serve`, and operator subcommands that mirror the
//! Azure setup steps (`sp create` like `az ad sp create-for-rbac`, `maa set-issuer`, ...).
//!
//! Operator subcommands work directly on the state directory (under its lock), so they work
//! whether or not a server is running on it, and a running server sees their changes at once.
//! Their output is JSON on standard output; errors go to standard error with the exit codes of
//! [`quarry_common::ExitCode`].

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use quarry_common::ExitCode;

use crate::entra::{
    BUILTIN_FEDERATION_ISSUER, DEFAULT_ACCESS_TOKEN_LIFETIME_SECS, DEFAULT_FEDERATION_AUDIENCE,
    Entra, FederatedCredential,
};
use crate::faults::Fault;
use crate::maa::{DEFAULT_TOKEN_LIFETIME_SECS, Maa};
use crate::persist::StateDir;
use crate::server::{ServeOptions, serve, shutdown_signal};

/// A local emulator of Entra ID, Microsoft Azure Attestation and Azure Managed HSM.
#[derive(Debug, Parser)]
#[command(name = "quarry-azure-emulator", version)]
pub struct Cli {
    /// The state directory (CA, tenant, principals, keys, issuer configuration).
    #[arg(long, global = true, env = "QUARRY_EMULATOR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS server.
    Serve(ServeArgs),
    /// Service principals (applications) of the tenant.
    #[command(subcommand)]
    Sp(SpCommand),
    /// The built-in and external issuers of federated tokens (workload identity).
    #[command(subcommand)]
    Federation(FederationCommand),
    /// The MAA instance.
    Maa {
        /// The emulator's URL as clients reach it: the issuer while none is configured.
        #[arg(
            long,
            env = "QUARRY_EMULATOR_URL",
            default_value = "https://localhost:8443"
        )]
        emulator_url: String,
        /// The MAA subcommand.
        #[command(subcommand)]
        command: MaaCommand,
    },
    /// Print the tenant id.
    Tenant,
    /// The Managed HSM: create it, assign roles, create keys, provision everything.
    Hsm {
        /// The emulator's URL as clients reach it (key ids and the HSM's host name derive
        /// from it).
        #[arg(
            long,
            env = "QUARRY_EMULATOR_URL",
            default_value = "https://localhost:8443"
        )]
        emulator_url: String,
        /// The HSM subcommand.
        #[command(subcommand)]
        command: crate::hsm::ops::HsmCommand,
    },
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Write the process id and bound address here once listening.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// A fault to inject from the start, as JSON (repeatable), e.g.
    /// '{"route":"/attest/SgxEnclave","status":503,"times":2}'.
    #[arg(long = "fault", value_name = "JSON")]
    pub faults: Vec<String>,
    /// Lifetime of Entra ID access tokens in seconds.
    #[arg(long, default_value_t = DEFAULT_ACCESS_TOKEN_LIFETIME_SECS)]
    pub access_token_lifetime: u64,
    /// Lifetime of MAA tokens in seconds.
    #[arg(long, default_value_t = DEFAULT_TOKEN_LIFETIME_SECS)]
    pub maa_token_lifetime: u64,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    pub insecure_non_loopback: bool,
    /// Verify quotes' DCAP signatures and TCB against this collateral (dcap-qvl JSON, one
    /// platform); without it quotes are parsed but not verified.
    #[arg(long, value_name = "FILE")]
    pub dcap_collateral: Option<PathBuf>,
    /// Verify DCAP collateral at this fixed time (Unix seconds) instead of now, for expired
    /// test collateral.
    #[arg(long, value_name = "UNIX_SECONDS", requires = "dcap_collateral")]
    pub dcap_fixed_time: Option<i64>,
}

/// `sp` subcommands.
#[derive(Debug, Subcommand)]
pub enum SpCommand {
    /// Create an application with a service principal and a client secret; prints appId,
    /// displayName, password and tenant like `az ad sp create-for-rbac`.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List service principals like `az ad sp list` (`id` is the object id).
    List {
        /// Only those with this display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Add a federated identity credential to an application.
    AddFederatedCredential {
        /// The application (client) id.
        #[arg(long)]
        app_id: String,
        /// The credential's name.
        #[arg(long, default_value = "federated")]
        name: String,
        /// The assertion issuer; the built-in issuer if absent.
        #[arg(long)]
        issuer: Option<String>,
        /// The assertion subject.
        #[arg(long)]
        subject: String,
        /// Accepted audiences (repeatable).
        #[arg(long = "audience", default_values_t = [DEFAULT_FEDERATION_AUDIENCE.to_owned()])]
        audiences: Vec<String>,
    },
}

/// `federation` subcommands.
#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Mint a token from the built-in issuer (what a projected service-account token file
    /// holds); prints the token.
    Token {
        /// The subject (`sub`).
        #[arg(long)]
        subject: String,
        /// The audience (`aud`).
        #[arg(long, default_value = DEFAULT_FEDERATION_AUDIENCE)]
        audience: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        lifetime: u64,
    },
    /// Register an external issuer with its JWK set.
    AddIssuer {
        /// The issuer (`iss`).
        #[arg(long)]
        issuer: String,
        /// A file holding its JWK set (`{"keys":[...]}`).
        #[arg(long)]
        jwks: PathBuf,
    },
}

/// `maa` subcommands.
#[derive(Debug, Subcommand)]
pub enum MaaCommand {
    /// Set the issuer of new MAA tokens (a release policy's `authority`).
    SetIssuer {
        /// An https URL without trailing slash.
        issuer: String,
    },
    /// Set the `x-ms-sgx-tcbidentifier` claim.
    SetTcbIdentifier {
        /// The value (a string).
        value: String,
    },
    /// Show the issuer configuration.
    Show,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage.into()
            } else {
                ExitCode::Ok.into()
            };
        }
    };
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::Ok.into(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            classify(&e).into()
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUARRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(quarry_common::log::ansi_for_stderr())
        .try_init();
}

/// Unreadable input files exit with 3, everything else with 1.
fn classify(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(|c| c.is::<UnreadableInput>()) {
        ExitCode::Unreadable
    } else {
        ExitCode::Invalid
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read {0}")]
struct UnreadableInput(PathBuf);

fn state_dir(cli_dir: Option<&Path>) -> anyhow::Result<StateDir> {
    let dir = cli_dir.context("--state-dir (or QUARRY_EMULATOR_STATE_DIR) is required")?;
    StateDir::open(dir).context("opening the state directory")
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = cli.state_dir.as_deref();
    match cli.command {
        Command::Serve(args) => run_serve(args, dir),
        Command::Sp(cmd) => run_sp(cmd, &state_dir(dir)?),
        Command::Federation(cmd) => run_federation(cmd, &state_dir(dir)?),
        Command::Maa {
            emulator_url,
            command,
        } => run_maa(command, &state_dir(dir)?, &emulator_url),
        Command::Hsm {
            emulator_url,
            command,
        } => {
            let state = state_dir(dir)?;
            print_json(&crate::hsm::ops::run(
                state.path(),
                &emulator_url,
                &command,
            )?)
        }
        Command::Tenant => {
            let entra = Entra::open(&state_dir(dir)?)?;
            print_json(&json!({ "tenantId": entra.tenant_id() }))
        }
    }
}

fn run_serve(args: ServeArgs, dir: Option<&Path>) -> anyhow::Result<()> {
    let state_dir = dir
        .context("--state-dir (or QUARRY_EMULATOR_STATE_DIR) is required")?
        .to_owned();
    let faults = args
        .faults
        .iter()
        .map(|f| Fault::from_json(f))
        .collect::<Result<Vec<_>, _>>()
        .context("--fault")?;
    let options = ServeOptions {
        listen: args.listen,
        state_dir,
        ready_file: args.ready_file,
        faults,
        access_token_lifetime_secs: args.access_token_lifetime,
        maa_token_lifetime_secs: args.maa_token_lifetime,
        insecure_non_loopback: args.insecure_non_loopback,
        dcap_collateral: args.dcap_collateral,
        dcap_fixed_time: args.dcap_fixed_time,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(options, crate::hsm_routes, shutdown_signal()))?;
    Ok(())
}

fn run_sp(cmd: SpCommand, state: &StateDir) -> anyhow::Result<()> {
    let entra = Entra::open(state)?;
    match cmd {
        SpCommand::Create { name } => {
            let created = entra.create_service_principal(&name)?;
            print_json(&serde_json::to_value(&created)?)
        }
        SpCommand::List { display_name } => {
            let list: Vec<Value> = entra
                .service_principals()?
                .iter()
                .filter(|sp| display_name.as_ref().is_none_or(|n| &sp.display_name == n))
                .map(|sp| sp.listing(entra.tenant_id()))
                .collect();
            print_json(&Value::Array(list))
        }
        SpCommand::AddFederatedCredential {
            app_id,
            name,
            issuer,
            subject,
            audiences,
        } => {
            let credential = FederatedCredential {
                name,
                issuer: issuer.unwrap_or_else(|| BUILTIN_FEDERATION_ISSUER.to_owned()),
                subject,
                audiences,
            };
            entra.add_federated_credential(&app_id, credential.clone())?;
            print_json(&serde_json::to_value(&credential)?)
        }
    }
}

fn run_federation(cmd: FederationCommand, state: &StateDir) -> anyhow::Result<()> {
    let entra = Entra::open(state)?;
    match cmd {
        FederationCommand::Token {
            subject,
            audience,
            lifetime,
        } => {
            let token = entra.issue_federated_token(&subject, &audience, lifetime)?;
            let mut out = std::io::stdout().lock();
            out.write_all(token.as_bytes())?;
            out.write_all(b"\n")?;
            Ok(())
        }
        FederationCommand::AddIssuer { issuer, jwks } => {
            let text = std::fs::read_to_string(&jwks)
                .map_err(|e| anyhow::Error::new(e).context(UnreadableInput(jwks.clone())))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::Error::new(e).context(UnreadableInput(jwks.clone())))?;
            entra.add_federated_issuer(&issuer, value)?;
            print_json(&json!({ "issuer": issuer }))
        }
    }
}

fn run_maa(cmd: MaaCommand, state: &StateDir, emulator_url: &str) -> anyhow::Result<()> {
    match cmd {
        MaaCommand::SetIssuer { issuer } => Maa::set_issuer(state, &issuer)?,
        MaaCommand::SetTcbIdentifier { value } => Maa::set_tcb_identifier(state, &value)?,
        MaaCommand::Show => {}
    }
    let maa = Maa::open(state, emulator_url)?;
    print_json(&maa.describe()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_serve() {
        let cli = Cli::try_parse_from([
            "quarry-azure-emulator",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            "/s",
            "--fault",
            r#"{"route":"*","status":503}"#,
        ])
        .unwrap();
        assert_eq!(cli.state_dir.as_deref(), Some(Path::new("/s")));
        assert!(
            matches!(cli.command, Command::Serve(ServeArgs { ref faults, .. }) if faults.len() == 1)
        );
    }
}
