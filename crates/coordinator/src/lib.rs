//! The Quarry Coordinator: state machine, Client API, Marble API, recovery and updates.
