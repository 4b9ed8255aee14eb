//! `quarry`: the operator's command-line tool.

fn main() -> std::process::ExitCode {
    eprintln!("quarry: not yet implemented");
    quarry_common::ExitCode::Invalid.into()
}
