//! Lenient decoding, as MarbleRun's Coordinator decodes a manifest with Go's `encoding/json`:
//! keys match struct fields case-insensitively (Go's folding, which also maps `K` (Kelvin) to `k`
//! and `ſ` to `s`), unknown keys are ignored, `null` leaves a field at its default, byte fields
//! take a standard base64 string or an array of numbers, integers must be integers.
//!
//! Quarry returns what Go drops silently: every ignored key or value is a [`Warning`] with its
//! path. It refuses what Go resolves arbitrarily: a key given twice (or twice in different case)
//! is an error. Type errors are collected, not stopped at, so one run reports them all.

use std::collections::BTreeMap;
use std::fmt;

use quarry_common::DocPath;

use crate::node::{Node, Number};

/// Something in a document that was accepted but has no effect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Warning {
    /// Where it is.
    pub path: DocPath,
    /// What it is.
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

/// The kinds of [`Warning`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// A key that no field of the object has; ignored.
    UnknownKey,
    /// A known field whose value has no effect, with the reason.
    IgnoredField(&'static str),
    /// A package identity combination that only a `Debug` package may have (checks C4, C5).
    DebugPackage(String),
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey => f.write_str("unknown key, ignored"),
            Self::IgnoredField(reason) => write!(f, "ignored: {reason}"),
            Self::DebugPackage(message) => f.write_str(message),
        }
    }
}

/// A value of the wrong type or form, at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldError {
    /// Where it is.
    pub path: DocPath,
    /// What is wrong, lower-case.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

pub(crate) use quarry_common::go::decode_std_base64;
/// Go's `strings.EqualFold` of a value with an (ASCII) name (actions, feature gates). Object
/// keys are matched to field names with [`quarry_common::go::json_key_eq`] instead, as Go's
/// JSON decoder folds them differently.
pub(crate) use quarry_common::go::equal_fold as go_fold_eq;

/// Collects warnings and errors while turning [`Node`]s into model values.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    pub(crate) warnings: Vec<Warning>,
    pub(crate) errors: Vec<FieldError>,
}

impl Decoder {
    pub(crate) fn error(&mut self, path: &DocPath, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.clone(),
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, path: &DocPath, kind: WarningKind) {
        self.warnings.push(Warning {
            path: path.clone(),
            kind,
        });
    }

    fn type_error(&mut self, path: &DocPath, expected: &str, found: &Node) {
        self.error(path, format!("expected {expected}, found {}", found.kind()));
    }

    /// Decodes the fields of a struct: `each` gets the canonical name of every known key. An
    /// exact match wins over a case-insensitive one, as in Go.
    pub(crate) fn fields(
        &mut self,
        node: &Node,
        path: &DocPath,
        names: &[&'static str],
        mut each: impl FnMut(&mut Self, &'static str, &Node, &DocPath),
    ) {
        let entries = match node {
            Node::Null => return,
            Node::Object(entries) => entries,
            other => return self.type_error(path, "an object", other),
        };
        let mut seen: Vec<&'static str> = Vec::new();
        for (key, value) in entries {
            let name = names.iter().find(|n| **n == key).or_else(|| {
                names
                    .iter()
                    .find(|n| quarry_common::go::json_key_eq(key, n))
            });
            let Some(&name) = name else {
                self.warn(&unknown_key_path(path, key), WarningKind::UnknownKey);
                continue;
            };
            let field_path = path.field(name);
            if seen.contains(&name) {
                self.error(
                    &field_path,
                    format!("key {key:?} sets field {name} a second time (keys match case-insensitively)"),
                );
                continue;
            }
            seen.push(name);
            each(self, name, value, &field_path);
        }
    }

    /// Decodes an object whose keys are names (case-sensitive).
    pub(crate) fn map<T>(
        &mut self,
        node: &Node,
        path: &DocPath,
        mut each: impl FnMut(&mut Self, &Node, &DocPath) -> T,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        match node {
            Node::Null => {}
            Node::Object(entries) => {
                for (key, value) in entries {
                    let item = each(self, value, &path.key(key));
                    out.insert(key.clone(), item);
                }
            }
            other => self.type_error(path, "an object", other),
        }
        out
    }

    /// Decodes an array.
    pub(crate) fn list<T>(
        &mut self,
        node: &Node,
        path: &DocPath,
        mut each: impl FnMut(&mut Self, &Node, &DocPath) -> T,
    ) -> Vec<T> {
        match node {
            Node::Null => Vec::new(),
            Node::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| each(self, item, &path.index(i)))
                .collect(),
            other => {
                self.type_error(path, "an array", other);
                Vec::new()
            }
        }
    }

    pub(crate) fn string(&mut self, node: &Node, path: &DocPath) -> String {
        match node {
            Node::Null => String::new(),
            Node::String(s) => s.clone(),
            other => {
                self.type_error(path, "a string", other);
                String::new()
            }
        }
    }

    pub(crate) fn strings(&mut self, node: &Node, path: &DocPath) -> Vec<String> {
        self.list(node, path, |d, item, p| d.string(item, p))
    }

    pub(crate) fn bool(&mut self, node: &Node, path: &DocPath) -> bool {
        match node {
            Node::Null => false,
            Node::Bool(b) => *b,
            other => {
                self.type_error(path, "true or false", other);
                false
            }
        }
    }

    /// An optional unsigned integer no larger than `max`.
    pub(crate) fn opt_uint_max(&mut self, node: &Node, path: &DocPath, max: u64) -> Option<u64> {
        match node {
            Node::Null => None,
            Node::Number(Number::Unsigned(u)) if *u <= max => Some(*u),
            Node::Number(Number::Unsigned(u)) => {
                self.error(path, format!("{u} is larger than {max}"));
                None
            }
            Node::Number(Number::Negative(i)) => {
                self.error(path, format!("expected a non-negative integer, found {i}"));
                None
            }
            Node::Number(Number::Float(f)) => {
                self.error(path, format!("expected an integer, found {f}"));
                None
            }
            other => {
                self.type_error(path, "an integer", other);
                None
            }
        }
    }

    pub(crate) fn opt_uint(&mut self, node: &Node, path: &DocPath) -> Option<u64> {
        self.opt_uint_max(node, path, u64::MAX)
    }

    pub(crate) fn uint(&mut self, node: &Node, path: &DocPath) -> u64 {
        self.opt_uint(node, path).unwrap_or(0)
    }

    pub(crate) fn opt_u16(&mut self, node: &Node, path: &DocPath) -> Option<u16> {
        self.opt_uint_max(node, path, u64::from(u16::MAX))
            .and_then(|v| u16::try_from(v).ok())
    }

    /// A signed integer (Go `int`, 64 bits).
    pub(crate) fn int(&mut self, node: &Node, path: &DocPath) -> i64 {
        match node {
            Node::Null => 0,
            Node::Number(Number::Negative(i)) => *i,
            Node::Number(Number::Unsigned(u)) => i64::try_from(*u).unwrap_or_else(|_| {
                self.error(path, format!("{u} is larger than {}", i64::MAX));
                0
            }),
            Node::Number(Number::Float(f)) => {
                self.error(path, format!("expected an integer, found {f}"));
                0
            }
            other => {
                self.type_error(path, "an integer", other);
                0
            }
        }
    }

    pub(crate) fn ints(&mut self, node: &Node, path: &DocPath) -> Vec<i64> {
        self.list(node, path, |d, item, p| d.int(item, p))
    }

    /// A Go `[]byte`: a standard base64 string or an array of numbers 0..=255.
    pub(crate) fn bytes(&mut self, node: &Node, path: &DocPath) -> Vec<u8> {
        self.opt_bytes(node, path).unwrap_or_default()
    }

    /// As [`Decoder::bytes`], with `None` for an absent or null value.
    pub(crate) fn opt_bytes(&mut self, node: &Node, path: &DocPath) -> Option<Vec<u8>> {
        match node {
            Node::Null => None,
            Node::String(s) => match decode_std_base64(s) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    self.error(path, format!("invalid base64: {e}"));
                    None
                }
            },
            Node::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let value = self.opt_uint_max(item, &path.index(i), u64::from(u8::MAX));
                    // In range by the bound just checked.
                    out.push(value.and_then(|v| u8::try_from(v).ok()).unwrap_or(0));
                }
                Some(out)
            }
            other => {
                self.type_error(path, "a base64 string or an array of bytes", other);
                None
            }
        }
    }

    /// Accepts any value, warning that it has no effect.
    pub(crate) fn ignored(&mut self, node: &Node, path: &DocPath, reason: &'static str) {
        if *node != Node::Null {
            self.warn(path, WarningKind::IgnoredField(reason));
        }
    }
}

/// The path of an unknown key: written as a field when it looks like one, as a quoted key
/// otherwise, so that odd characters cannot make the path ambiguous.
fn unknown_key_path(path: &DocPath, key: &str) -> DocPath {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        path.field(key)
    } else {
        path.key(key)
    }
}

/// Converts a node to a JSON value (for untyped Go `any` fields).
pub(crate) fn to_json_value(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Number(Number::Unsigned(u)) => Value::from(*u),
        Node::Number(Number::Negative(i)) => Value::from(*i),
        Node::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Node::String(s) => Value::String(s.clone()),
        Node::Array(items) => Value::Array(items.iter().map(to_json_value).collect()),
        Node::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_match_keys_as_gos_json_decoder_does() {
        // Go's decoder takes `MaxActıvations` (dotless i) for `MaxActivations`; ignoring it as
        // an unknown key would lift a limit that MarbleRun enforces.
        let raw = r#"{"Packages": {"p": {"UniqueID": "00"}},
            "Marbles": {"m": {"Package": "p", "MaxAct\u0131vations": 2}},
            "Secrets": {"k": {"Type": "symmetric-key", "S\u0130ze": 128, "Shared": true}}}"#;
        let document = crate::ManifestDocument::from_json(raw.as_bytes().to_vec()).unwrap();
        assert_eq!(document.manifest().marbles["m"].max_activations, 2);
        assert_eq!(document.manifest().secrets["k"].size, 128);
    }

    #[test]
    fn bytes_from_base64_or_numbers() {
        let mut d = Decoder::default();
        let p = DocPath::root().field("X");
        assert_eq!(d.bytes(&Node::String("AAEC".into()), &p), vec![0, 1, 2]);
        let arr = Node::Array(vec![
            Node::Number(Number::Unsigned(0)),
            Node::Number(Number::Unsigned(255)),
        ]);
        assert_eq!(d.bytes(&arr, &p), vec![0, 255]);
        assert!(d.errors.is_empty());
        let bad = Node::Array(vec![Node::Number(Number::Unsigned(256))]);
        d.bytes(&bad, &p);
        assert_eq!(d.errors[0].path.to_string(), "X[0]");
    }

    #[test]
    fn integers_refuse_fractions_and_negatives() {
        let mut d = Decoder::default();
        let p = DocPath::root().field("N");
        assert_eq!(d.uint(&Node::Number(Number::Float(1.5)), &p), 0);
        assert_eq!(d.uint(&Node::Number(Number::Negative(-1)), &p), 0);
        assert_eq!(d.uint(&Node::String("1".into()), &p), 0);
        assert_eq!(d.errors.len(), 3);
        assert_eq!(d.opt_u16(&Node::Number(Number::Unsigned(70000)), &p), None);
        assert_eq!(d.errors.len(), 4);
        assert_eq!(d.int(&Node::Number(Number::Negative(-3)), &p), -3);
    }
}
