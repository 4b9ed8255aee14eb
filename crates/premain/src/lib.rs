//! Marble side of activation: obtains a certificate, secrets and configuration from the
//! Coordinator, then starts the real program with them.
//!
//! Steps ([`run`]): read the `EDG_MARBLE_*` settings ([`config`]); make a fresh P-384 key with
//! a self-signed TLS certificate and a CSR, and load or create the UUID ([`identity`]); get a
//! quote over SHA-256 of the certificate ([`quote`]); call `/rpc.Marble/Activate`, retrying
//! while the Coordinator is unreachable or not ready ([`client`]); write the files, set the
//! environment and exec the program ([`launch`]).
//!
//! Wire-compatible with MarbleRun's premain: a MarbleRun Coordinator activates a Quarry Marble
//! and a Quarry Coordinator activates a MarbleRun Marble.

pub mod client;
pub mod config;
pub mod identity;
pub mod launch;
pub mod quote;

use std::ffi::OsString;
use std::sync::Arc;

use anyhow::Context;
use quarry_marble_api::ActivationReq;

use crate::client::ServerTrust;
use crate::config::Config;
use crate::identity::MarbleIdentity;

/// Activates with the settings of the process environment and execs the program; returns only
/// on failure. `own_args` are the premain's arguments after its name.
pub async fn run(own_args: Vec<OsString>) -> anyhow::Result<std::convert::Infallible> {
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let config = Config::from_lookup(|k| std::env::var(k).ok(), cwd)?;
    let parameters = activate(&config, &|k| std::env::var(k).ok()).await?;

    let env = launch::apply(&parameters)?;
    let plan = launch::plan(&parameters.argv, &own_args)?;
    tracing::info!(
        program = %plan.program.to_string_lossy(),
        files = parameters.files.len(),
        env = parameters.env.len(),
        "activated, starting the program"
    );
    Err(launch::exec(&plan, &env).into())
}

/// Everything up to the Coordinator's answer: identity, UUID, quote, activation.
pub async fn activate(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<quarry_marble_api::Parameters> {
    let identity = MarbleIdentity::generate(&config.dns_names, &config.ip_addresses)?;
    let uuid = identity::load_or_create_uuid(&config.uuid_file)?;
    let quote = quote::make_quote(&identity.report_data(), env);
    let trust = match &config.coordinator_root_ca {
        Some(path) => ServerTrust::from_pem_file(path)?,
        None => ServerTrust::Unverified,
    };
    let tls = Arc::new(client::client_config(&identity, &trust)?);
    let request = ActivationReq {
        quote,
        csr: identity.csr_der().to_vec(),
        marble_type: config.marble_type.clone(),
        uuid: uuid.hyphenated().to_string(),
    };
    tracing::info!(
        marble_type = %config.marble_type,
        %uuid,
        coordinator = %config.coordinator_addr,
        verified = matches!(trust, ServerTrust::Pinned(_)),
        "activating"
    );
    let parameters =
        client::activate(&config.coordinator_addr, tls, request, config.retry_timeout).await?;
    Ok(parameters)
}
