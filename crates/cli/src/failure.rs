//! The error type of the CLI's commands: a one-line message and the exit code it maps to
//! (DESIGN "Exit codes": 1 invalid or refused, 3 unreadable input, 4 connection or TLS,
//! 5 Coordinator identity mismatch).

use std::fmt;
use std::path::Path;

use quarry_common::ExitCode;

/// Why a command failed: printed as `error: <message>` and ended with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code.
    pub code: ExitCode,
    /// One line: what failed, with which value, and the cause.
    pub message: String,
    /// The `data` of the Coordinator's error answer, when it sent any: what the client must not
    /// lose although the request failed (the recovery secrets of a write in doubt).
    pub data: Option<serde_json::Value>,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Invalid input, or the Coordinator refused the request (exit 1).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Invalid, message)
    }

    /// An input file could not be read or parsed (exit 3).
    pub fn unreadable(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Unreadable, message)
    }

    /// The connection or TLS failed (exit 4).
    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Connection, message)
    }

    /// The Coordinator is not the expected one (exit 5).
    pub fn identity(message: impl Into<String>) -> Self {
        Self::new(ExitCode::IdentityMismatch, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The result of a command step.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// Reads a whole file of at most `limit` bytes; a missing, unreadable or oversized file is
/// exit 3 with the path in the message.
pub fn read_file(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::unreadable(format!("cannot read {what} {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::unreadable(format!("cannot read {what} {}: {e}", path.display())))?;
    if bytes.len() > limit {
        return Err(Failure::unreadable(format!(
            "{what} {} is larger than the limit of {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path`; failure is exit 1 (the result could not be delivered).
pub fn write_file(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| Failure::invalid(format!("cannot write {what} {}: {e}", path.display())))
}
