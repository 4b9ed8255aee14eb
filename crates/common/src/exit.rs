//! Exit codes of Quarry's command-line programs.

/// How a command-line program ended. The numbers are part of the CLI's interface: scripts test
/// them, so a value never changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCode {
    /// The command did what was asked.
    Ok,
    /// The input was invalid or the Coordinator refused the request.
    Invalid,
    /// The command line itself was wrong (clap's own code).
    Usage,
    /// An input file could not be read or parsed.
    Unreadable,
    /// The connection or the TLS handshake failed.
    Connection,
    /// The Coordinator is not the one the operator expects.
    IdentityMismatch,
}

impl ExitCode {
    /// The process exit status for this outcome.
    pub const fn code(self) -> i32 {
        match self {
            Self::Ok => 0,
            Self::Invalid => 1,
            Self::Usage => 2,
            Self::Unreadable => 3,
            Self::Connection => 4,
            Self::IdentityMismatch => 5,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        // Every value of `ExitCode::code` is in 0..=5, so the conversion cannot truncate.
        std::process::ExitCode::from(code.code() as u8)
    }
}
