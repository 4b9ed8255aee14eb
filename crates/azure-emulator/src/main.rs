//! `quarry-azure-emulator`: the local Entra ID, MAA and Managed HSM emulator.

fn main() {
    eprintln!("quarry-azure-emulator: not yet implemented");
    std::process::exit(1);
}
