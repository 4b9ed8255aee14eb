//! `quarry`: the operator's command-line tool. The work is done in the library; this file only
//! hands it the process's arguments and output streams.

fn main() -> std::process::ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    quarry_cli::main_with_args(std::env::args_os(), &mut stdout.lock(), &mut stderr.lock()).into()
}
