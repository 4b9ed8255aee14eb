//! Placeholder until the release benchmark lands.

fn main() {}
