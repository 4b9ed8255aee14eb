//! `quarry-azure-emulator`: the local Entra ID, MAA and Managed HSM emulator.

fn main() -> std::process::ExitCode {
    quarry_azure_emulator::cli::main()
}
