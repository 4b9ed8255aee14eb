//! The one rule every binary follows for colour in its log output: ANSI escape codes only when
//! the stream is a terminal and `NO_COLOR` is unset or empty.
//!
//! Logs usually end up in files (`quarry dev` and the test harness send each service's standard
//! error to `<binary>.log`, Kubernetes collects container output), where escape codes are noise
//! that breaks `grep`. The logging setup of each binary asks [`ansi_for_stderr`] instead of
//! relying on its logging library's default, which colours whenever it was built with colour
//! support.

use std::ffi::OsStr;
use std::io::IsTerminal;

/// `NO_COLOR`: any non-empty value turns colour off, even on a terminal (<https://no-color.org>).
pub const ENV_NO_COLOR: &str = "NO_COLOR";

/// Whether output to a stream may carry ANSI escape codes: only to a terminal, and only when
/// `no_color` (the value of [`ENV_NO_COLOR`]) is unset or empty.
pub fn ansi_allowed(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// [`ansi_allowed`] for this process's standard error and environment.
pub fn ansi_for_stderr() -> bool {
    ansi_allowed(
        std::io::stderr().is_terminal(),
        std::env::var_os(ENV_NO_COLOR).as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(ansi_allowed(true, None));
        assert!(ansi_allowed(true, Some(OsStr::new(""))));
        assert!(!ansi_allowed(true, Some(OsStr::new("1"))));
        assert!(!ansi_allowed(false, None));
        assert!(!ansi_allowed(false, Some(OsStr::new(""))));
    }
}
