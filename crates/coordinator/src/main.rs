//! `quarry-coordinator`: the Coordinator binary. Reads its configuration from the environment
//! (`EDG_*`, `QUARRY_*`), selects the enclave backend, starts the Coordinator and, with
//! `--ready-file`, reports its bound addresses once it listens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use quarry_common::ready::Ready;
use quarry_coordinator::Coordinator;
use quarry_coordinator::config::Config;

/// The Quarry Coordinator. Configuration comes from the EDG_COORDINATOR_* variables.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Write the process id and bound addresses to this file once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let debug = std::env::var("EDG_DEBUG_LOGGING").is_ok_and(|v| v == "1");
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(quarry_common::log::ansi_for_stderr())
        .with_env_filter(if debug { "debug" } else { "info" })
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("working directory")?;
    let config = Config::from_lookup(|k| std::env::var(k).ok(), cwd)?;
    for (name, value) in std::env::vars() {
        if name.starts_with("QUARRY_INSECURE_") || (name == "OE_SIMULATION" && value == "1") {
            tracing::warn!(variable = %name, "insecure option set");
        }
    }
    std::fs::create_dir_all(&config.seal_dir)
        .with_context(|| format!("creating seal directory {}", config.seal_dir.display()))?;
    let enclave = quarry_enclave::from_env(&config.seal_dir).context("enclave backend")?;
    // The manifest checks read the EDG_* variables; HSM sealing also QUARRY_AZURE_* and
    // QUARRY_HSM_*.
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("EDG_") || k.starts_with("QUARRY_AZURE_") || k.starts_with("QUARRY_HSM_")
        })
        .collect();

    let coordinator = Coordinator::start(config, Arc::from(enclave), env).await?;
    if let Some(path) = &args.ready_file {
        Ready::for_this_process(coordinator.addrs())
            .write(path)
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    let _hsm = coordinator.start_hsm();
    tokio::select! {
        result = coordinator.serve() => result?,
        signal = stop_signal() => {
            // A commit in progress runs on a blocking thread, which the runtime finishes before
            // the process exits; the store's commit protocol covers any harder stop.
            tracing::info!(signal, "stopping");
        }
    }
    Ok(())
}

/// Resolves with the name of the first SIGTERM (what Kubernetes sends) or SIGINT received.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default action (exit) still applies.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
