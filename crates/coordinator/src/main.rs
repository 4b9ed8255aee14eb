//! `quarry-coordinator`: the Coordinator binary.

fn main() {
    eprintln!("quarry-coordinator: not yet implemented");
    std::process::exit(1);
}
