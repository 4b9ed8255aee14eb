//! Size and nesting limits, one set for the Client API, the Marble API and the CLI.
//!
//! The request-body limits match MarbleRun's so that clients that work against MarbleRun also
//! work against Quarry.

/// Largest request body the Client API accepts, and the largest document the CLI reads.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Largest body of a recovery request (`POST /api/v2/recover`), as in MarbleRun.
pub const MAX_RECOVERY_BODY_BYTES: usize = 20 * 1024;

/// Deepest nesting of arrays and objects accepted in JSON and YAML documents.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Most nodes that YAML alias expansion may produce for one document, so that a small document
/// cannot expand into a huge one ("billion laughs").
pub const MAX_YAML_ALIAS_NODES: usize = 100_000;

/// Largest env file read by the CLI, the Coordinator and the tests.
pub const MAX_ENV_FILE_BYTES: usize = 1024 * 1024;
