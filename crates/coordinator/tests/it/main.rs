//! Integration tests of the Coordinator.

mod helm;
