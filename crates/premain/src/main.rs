//! `quarry-premain`: activates a Marble, then starts its program.

fn main() {
    eprintln!("quarry-premain: not yet implemented");
    std::process::exit(1);
}
