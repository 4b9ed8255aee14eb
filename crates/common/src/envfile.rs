//! The env-file format: one `KEY=VALUE` assignment a line, as a POSIX shell would read a simple
//! script of assignments, so that the standalone snippet of the HSM documentation parses as
//! written.
//!
//! Accepted:
//! - blank lines and lines starting with `#`;
//! - an optional `export ` before the assignment;
//! - keys of letters, digits and `_`, not starting with a digit;
//! - values unquoted (ending at whitespace, where a `#` then starts a comment), in single quotes
//!   (taken literally) or in double quotes (`\"`, `\\`, `\$` and `` \` `` escaped); adjacent parts
//!   concatenate (`a"b c"'d'`);
//! - `$NAME` and `${NAME}` in unquoted and double-quoted parts, expanded from assignments earlier
//!   in the file, then from the lookup the caller passes (usually the process environment).
//!
//! Refused, with the line number: a line that is not an assignment, an unterminated quote, a
//! reference to a variable defined nowhere (a silent empty value would hide a typo), command
//! substitution, and a value that continues after whitespace (`A=b c`, which a shell would run as
//! a command).

use std::collections::BTreeMap;
use std::fmt;

/// Why an env file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvFileError {
    /// A line is not a `KEY=VALUE` assignment.
    #[error("line {line}: expected KEY=VALUE, found {found:?}")]
    NotAnAssignment {
        /// 1-based line number.
        line: usize,
        /// The start of the offending line.
        found: String,
    },
    /// The key is not a valid variable name.
    #[error("line {line}: invalid variable name {name:?}")]
    InvalidName {
        /// 1-based line number.
        line: usize,
        /// The key as written.
        name: String,
    },
    /// A quoted part has no closing quote.
    #[error("line {line}: unterminated {quote} quote")]
    UnterminatedQuote {
        /// 1-based line number.
        line: usize,
        /// `single` or `double`.
        quote: &'static str,
    },
    /// A `$NAME` refers to a variable defined neither in the file nor in the environment.
    #[error("line {line}: variable {name} is not defined")]
    Undefined {
        /// 1-based line number.
        line: usize,
        /// The variable referred to.
        name: String,
    },
    /// The value uses shell syntax that an env file does not support.
    #[error("line {line}: unsupported syntax in value: {what}")]
    Unsupported {
        /// 1-based line number.
        line: usize,
        /// What was found.
        what: &'static str,
    },
    /// The file is larger than [`crate::limits::MAX_ENV_FILE_BYTES`].
    #[error("env file is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// The assignments of an env file, in file order of first definition; a later assignment of the
/// same key replaces the earlier value, as in a shell.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    vars: BTreeMap<String, String>,
    order: Vec<String>,
}

impl fmt::Debug for EnvFile {
    // Env files carry client secrets: show the names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvFile")
            .field("keys", &self.order)
            .finish_non_exhaustive()
    }
}

impl EnvFile {
    /// Parses `text`, expanding references to variables not defined earlier in the file with
    /// `lookup`.
    pub fn parse_with(
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, EnvFileError> {
        if text.len() > crate::limits::MAX_ENV_FILE_BYTES {
            return Err(EnvFileError::TooLarge {
                size: text.len(),
                limit: crate::limits::MAX_ENV_FILE_BYTES,
            });
        }
        let mut env = Self::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let body = strip_export(trimmed);
            let Some((name, rest)) = body.split_once('=') else {
                return Err(EnvFileError::NotAnAssignment {
                    line,
                    found: preview(trimmed),
                });
            };
            if !is_valid_name(name) {
                return Err(EnvFileError::InvalidName {
                    line,
                    name: preview(name),
                });
            }
            let value = parse_value(rest, line, |var| {
                env.vars.get(var).cloned().or_else(|| lookup(var))
            })?;
            env.set(name, value);
        }
        Ok(env)
    }

    /// Parses `text`, expanding undefined references from the process environment.
    pub fn parse(text: &str) -> Result<Self, EnvFileError> {
        Self::parse_with(text, |name| std::env::var(name).ok())
    }

    /// Parses `text` without consulting any environment: every reference must be defined earlier
    /// in the file.
    pub fn parse_isolated(text: &str) -> Result<Self, EnvFileError> {
        Self::parse_with(text, |_| None)
    }

    /// The value of `name`, if assigned.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Assigns `value` to `name`.
    pub fn set(&mut self, name: &str, value: String) {
        if self.vars.insert(name.to_owned(), value).is_none() {
            self.order.push(name.to_owned());
        }
    }

    /// The assignments in the order their keys first appeared.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.order
            .iter()
            .map(|k| (k.as_str(), self.vars[k].as_str()))
    }

    /// Whether the file assigned nothing.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Renders the assignments as an env file that [`EnvFile::parse`] reads back to the same
    /// values and that a POSIX shell can `source` (every value single-quoted).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (key, value) in self.iter() {
            out.push_str("export ");
            out.push_str(key);
            out.push('=');
            out.push_str(&shell_quote(value));
            out.push('\n');
        }
        out
    }
}

/// Quotes `value` so that a shell and [`EnvFile::parse`] read it back unchanged.
pub fn shell_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str(r#"'"'"'"#);
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn strip_export(line: &str) -> &str {
    match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    }
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn preview(s: &str) -> String {
    s.chars().take(40).collect()
}

fn parse_value(
    rest: &str,
    line: usize,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, EnvFileError> {
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                // End of the value: only a comment may follow.
                let tail: String = chars.collect();
                let tail = tail.trim_start();
                if tail.is_empty() || tail.starts_with('#') {
                    return Ok(out);
                }
                return Err(EnvFileError::Unsupported {
                    line,
                    what: "text after whitespace (quote values that contain spaces)",
                });
            }
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => out.push(c),
                    None => {
                        return Err(EnvFileError::UnterminatedQuote {
                            line,
                            quote: "single",
                        });
                    }
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\' | '$' | '`')) => out.push(c),
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => {
                            return Err(EnvFileError::UnterminatedQuote {
                                line,
                                quote: "double",
                            });
                        }
                    },
                    Some('$') => expand(&mut chars, &mut out, line, &lookup)?,
                    Some('`') => {
                        return Err(EnvFileError::Unsupported {
                            line,
                            what: "command substitution",
                        });
                    }
                    Some(c) => out.push(c),
                    None => {
                        return Err(EnvFileError::UnterminatedQuote {
                            line,
                            quote: "double",
                        });
                    }
                }
            },
            '\\' => match chars.next() {
                Some(c) => out.push(c),
                None => {
                    return Err(EnvFileError::Unsupported {
                        line,
                        what: "line continuation",
                    });
                }
            },
            '$' => expand(&mut chars, &mut out, line, &lookup)?,
            '`' => {
                return Err(EnvFileError::Unsupported {
                    line,
                    what: "command substitution",
                });
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                return Err(EnvFileError::Unsupported {
                    line,
                    what: "shell operator",
                });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn expand(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    out: &mut String,
    line: usize,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(), EnvFileError> {
    let mut name = String::new();
    match chars.peek() {
        Some('{') => {
            chars.next();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) if c == '_' || c.is_ascii_alphanumeric() => name.push(c),
                    Some(_) => {
                        return Err(EnvFileError::Unsupported {
                            line,
                            what: "parameter expansion other than ${NAME}",
                        });
                    }
                    None => {
                        return Err(EnvFileError::Unsupported {
                            line,
                            what: "unterminated ${",
                        });
                    }
                }
            }
        }
        Some('(') => {
            return Err(EnvFileError::Unsupported {
                line,
                what: "command substitution",
            });
        }
        _ => {
            while let Some(&c) = chars.peek() {
                if c == '_' || c.is_ascii_alphanumeric() {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                // A lone `$` is literal, as in a shell.
                out.push('$');
                return Ok(());
            }
        }
    }
    if !is_valid_name(&name) {
        return Err(EnvFileError::InvalidName { line, name });
    }
    match lookup(&name) {
        Some(value) => {
            out.push_str(&value);
            Ok(())
        }
        None => Err(EnvFileError::Undefined { line, name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SNIPPET: &str = r#"
client_id=00000000-1111-2222-3333-444444444444
client_secret='s3cr3t~value'
tenant_id=55555555-6666-7777-8888-999999999999
vault_url=https://marblerunhsm.managedhsm.azure.net/
# Azure credentials
export EDG_AZURE_CLIENT_ID=${client_id}
export EDG_AZURE_CLIENT_SECRET=${client_secret}
export EDG_AZURE_TENANT_ID=${tenant_id}

# HSM key information
export EDG_AZURE_HSM_KEY_NAME="marblerun-skr-key"
export EDG_AZURE_HSM_KEY_VERSION="" # Optionally, set to use a specific key version
export EDG_AZURE_HSM_VAULT_URL=${vault_url}

# MAA URL. Make sure this matches the location of your deployment
export EDG_MAA_URL="https://shareduks.uks.attest.azure.net"
"#;

    #[test]
    fn parses_the_seed_snippet_as_written() {
        let env = EnvFile::parse_isolated(SEED_SNIPPET).unwrap();
        assert_eq!(
            env.get("EDG_AZURE_CLIENT_ID"),
            Some("00000000-1111-2222-3333-444444444444")
        );
        assert_eq!(env.get("EDG_AZURE_CLIENT_SECRET"), Some("s3cr3t~value"));
        assert_eq!(env.get("EDG_AZURE_HSM_KEY_NAME"), Some("marblerun-skr-key"));
        assert_eq!(env.get("EDG_AZURE_HSM_KEY_VERSION"), Some(""));
        assert_eq!(
            env.get("EDG_AZURE_HSM_VAULT_URL"),
            Some("https://marblerunhsm.managedhsm.azure.net/")
        );
        assert_eq!(
            env.get("EDG_MAA_URL"),
            Some("https://shareduks.uks.attest.azure.net")
        );
    }

    #[test]
    fn takes_undefined_references_from_the_lookup() {
        let env = EnvFile::parse_with("export A=${client_id}-x\n", |name| {
            (name == "client_id").then(|| "abc".to_owned())
        })
        .unwrap();
        assert_eq!(env.get("A"), Some("abc-x"));
    }

    #[test]
    fn refuses_undefined_references() {
        let err = EnvFile::parse_isolated("A=1\nexport B=${nope}\n").unwrap_err();
        assert_eq!(
            err,
            EnvFileError::Undefined {
                line: 2,
                name: "nope".into()
            }
        );
    }

    #[test]
    fn quoting_rules() {
        let env = EnvFile::parse_isolated(
            "A='x $y \"z\"'\nB=\"a\\\"b\\\\c $A\"\nC=a\"b c\"'d'\nD=\nE=$\nF=x#y # comment\n",
        )
        .unwrap();
        assert_eq!(env.get("A"), Some("x $y \"z\""));
        assert_eq!(env.get("B"), Some("a\"b\\c x $y \"z\""));
        assert_eq!(env.get("C"), Some("ab cd"));
        assert_eq!(env.get("D"), Some(""));
        assert_eq!(env.get("E"), Some("$"));
        assert_eq!(env.get("F"), Some("x#y"));
    }

    #[test]
    fn refuses_what_a_shell_would_not_assign() {
        let cases = [
            ("A=b c\n", 1),
            ("just words\n", 1),
            ("\n1A=x\n", 2),
            ("A='open\n", 1),
            ("A=\"open\n", 1),
            ("A=$(id)\n", 1),
            ("A=`id`\n", 1),
            ("A=x;rm\n", 1),
            ("A=${x:-y}\n", 1),
        ];
        for (text, line) in cases {
            let err = EnvFile::parse_isolated(text).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("line {line}:")),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn later_assignments_replace_earlier_ones() {
        let env = EnvFile::parse_isolated("A=1\nB=2\nA=3\n").unwrap();
        assert_eq!(env.iter().collect::<Vec<_>>(), vec![("A", "3"), ("B", "2")]);
    }

    #[test]
    fn debug_shows_no_values() {
        let env = EnvFile::parse_isolated("EDG_AZURE_CLIENT_SECRET=hunter2\n").unwrap();
        let debug = format!("{env:?}");
        assert!(debug.contains("EDG_AZURE_CLIENT_SECRET") && !debug.contains("hunter2"));
    }

    proptest::proptest! {
        #[test]
        fn render_round_trips(values in proptest::collection::vec("[^\r\n]*", 0..8)) {
            let mut env = EnvFile::default();
            for (i, v) in values.iter().enumerate() {
                env.set(&format!("K{i}"), v.clone());
            }
            let back = EnvFile::parse_isolated(&env.render()).unwrap();
            proptest::prop_assert_eq!(back, env);
        }

        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = EnvFile::parse_isolated(&text);
        }
    }
}
