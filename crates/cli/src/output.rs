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
