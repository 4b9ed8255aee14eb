//! Commit benchmark.
fn main() {}
