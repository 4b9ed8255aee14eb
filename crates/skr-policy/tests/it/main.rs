//! Integration tests of `quarry-skr-policy`: the seed document's policy, every operator through
//! whole-policy evaluation, and the parser on arbitrary input.

mod operators;
mod parser;
mod seed;
