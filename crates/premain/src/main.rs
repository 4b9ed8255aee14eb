//! `quarry-premain`: activates a Marble with the Coordinator, then replaces itself with the
//! real program. Usage: `quarry-premain [PROGRAM [ARGS...]]` with `EDG_MARBLE_TYPE` set.

use std::process::ExitCode;

fn main() -> ExitCode {
    let json = std::env::var("EDG_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(quarry_common::log::ansi_for_stderr())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUARRY_LOG")
                .unwrap_or_else(|_| "info".into()),
        );
    if json {
        builder.json().init();
    } else {
        builder.init();
    }

    let own_args: Vec<_> = std::env::args_os().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(quarry_premain::run(own_args)) {
        Ok(never) => match never {},
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
