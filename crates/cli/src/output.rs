//! How results are shown: text for people or JSON for scripts (`--output json`), and progress
//! spinners for operations that wait (drawn on standard error only when it is a terminal).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// The output format of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document on standard output.
    Json,
}

/// Where a command writes its results and notices.
pub struct Out<'a> {
    /// The chosen format.
    pub format: OutputFormat,
    /// Standard output (results).
    pub out: &'a mut dyn Write,
    /// Standard error (warnings, notices).
    pub err: &'a mut dyn Write,
}

impl Out<'_> {
    /// Prints a result: `text` in text mode, `json` in JSON mode.
    pub fn result(&mut self, text: &str, json: Value) {
        match self.format {
            OutputFormat::Text => {
                let _ = writeln!(self.out, "{text}");
            }
            OutputFormat::Json => {
                let _ = writeln!(self.out, "{json}");
            }
        }
    }

    /// A warning on standard error.
    pub fn warn(&mut self, message: &str) {
        let _ = writeln!(self.err, "warning: {message}");
    }

    /// A notice on standard error.
    pub fn note(&mut self, message: &str) {
        let _ = writeln!(self.err, "{message}");
    }
}

/// `n` and the noun for it: `1 problem`, `2 problems` (`plural` is the noun's plural form).
pub fn count(n: impl Into<u64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    let noun = if n == 1 { singular } else { plural };
    format!("{n} {noun}")
}

/// A spinner with `message` while an operation waits; hidden unless standard error is a
/// terminal. Finish it with [`ProgressBar::finish_and_clear`].
pub fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_agrees_in_number() {
        assert_eq!(count(0u64, "problem", "problems"), "0 problems");
        assert_eq!(count(1u64, "problem", "problems"), "1 problem");
        assert_eq!(count(2u64, "secret", "secrets"), "2 secrets");
    }
}
