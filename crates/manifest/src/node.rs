//! The syntax layer: JSON or YAML text to a generic tree of [`Node`]s, before any field is
//! interpreted.
//!
//! Invariants kept here, so that the decoder above never sees a hostile shape:
//! - an object never holds the same key twice (a duplicate is a syntax error with its position;
//!   MarbleRun silently keeps the last value, Quarry refuses);
//! - arrays and objects nest at most [`MAX_NESTING_DEPTH`] levels;
//! - YAML aliases expand to at most [`MAX_YAML_ALIAS_NODES`] events.

use std::fmt;

use quarry_common::limits::{MAX_BODY_BYTES, MAX_NESTING_DEPTH, MAX_YAML_ALIAS_NODES};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// A number as the parser saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    /// A non-negative integer.
    Unsigned(u64),
    /// A negative integer.
    Negative(i64),
    /// A number with a fraction or exponent, or an integer too large for 64 bits.
    Float(f64),
}

/// One value of a parsed document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    /// Entries in document order; keys are unique.
    Object(Vec<(String, Node)>),
}

impl Node {
    /// A short name of the node's JSON type, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }
}

/// The format of a manifest document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// JSON, the format the Coordinator accepts.
    Json,
    /// YAML, which the CLI converts to JSON before upload.
    Yaml,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "json",
            Format::Yaml => "yaml",
        })
    }
}

/// Why a document could not be read as a tree of values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    /// The document is larger than [`MAX_BODY_BYTES`].
    #[error("document is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The parser refused the text; the message carries the position.
    #[error("invalid {format}: {message}")]
    Invalid {
        /// Which parser refused it.
        format: Format,
        /// The parser's message, with line and column.
        message: String,
    },
}

/// Parses JSON text into a tree.
pub(crate) fn parse_json(raw: &[u8]) -> Result<Node, SyntaxError> {
    check_size(raw)?;
    let mut de = serde_json::Deserializer::from_slice(raw);
    let invalid = |e: serde_json::Error| SyntaxError::Invalid {
        format: Format::Json,
        message: e.to_string(),
    };
    let node = NodeSeed { depth: 0 }
        .deserialize(&mut de)
        .map_err(invalid)?;
    de.end().map_err(invalid)?;
    Ok(node)
}

/// Parses YAML text (one document) into a tree, with duplicate keys refused and alias
/// expansion and nesting capped.
pub(crate) fn parse_yaml(text: &str) -> Result<Node, SyntaxError> {
    check_size(text.as_bytes())?;
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_NESTING_DEPTH;
    budget.max_reader_input_bytes = Some(MAX_BODY_BYTES);
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_YAML_ALIAS_NODES;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    let RootNode(node) =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| SyntaxError::Invalid {
            format: Format::Yaml,
            message: yaml_message(&e),
        })?;
    Ok(node)
}

/// The parser's message, except where it speaks to the parser's caller rather than the user.
fn yaml_message(error: &serde_saphyr::Error) -> String {
    match error {
        serde_saphyr::Error::MultipleDocuments { location, .. } => format!(
            "a manifest is one yaml document, found a second one (after `---`) at line {}, \
             column {}",
            location.line(),
            location.column()
        ),
        other => other.to_string(),
    }
}

fn check_size(raw: &[u8]) -> Result<(), SyntaxError> {
    if raw.len() > MAX_BODY_BYTES {
        return Err(SyntaxError::TooLarge {
            size: raw.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(())
}

/// A whole document, deserialized from depth zero.
struct RootNode(Node);

impl<'de> de::Deserialize<'de> for RootNode {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NodeSeed { depth: 0 }
            .deserialize(deserializer)
            .map(RootNode)
    }
}

/// Deserializes one [`Node`], counting the nesting depth.
#[derive(Clone, Copy)]
pub(crate) struct NodeSeed {
    depth: usize,
}

impl NodeSeed {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > MAX_NESTING_DEPTH {
            return Err(E::custom(format_args!(
                "nesting deeper than {MAX_NESTING_DEPTH} levels"
            )));
        }
        Ok(Self { depth })
    }
}

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Node;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        self.deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(Number::Unsigned(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(match u64::try_from(v) {
            Ok(u) => Number::Unsigned(u),
            Err(_) => Number::Negative(v),
        }))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Number(match u64::try_from(v) {
            Ok(u) => Number::Unsigned(u),
            // Too large for any manifest field; kept as a float so that it is refused where an
            // integer is expected.
            Err(_) => Number::Float(v as f64),
        }))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Number(match (u64::try_from(v), i64::try_from(v)) {
            (Ok(u), _) => Number::Unsigned(u),
            (_, Ok(i)) => Number::Negative(i),
            _ => Number::Float(v as f64),
        }))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Number(Number::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        // YAML `!!binary` scalars arrive as bytes; JSON has no such type, so they become the
        // array of numbers that every byte field accepts.
        Ok(Node::Array(
            v.iter()
                .map(|b| Node::Number(Number::Unsigned(u64::from(*b))))
                .collect(),
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let inner = self.nested()?;
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(inner)?;
            entries.push((key, value));
        }
        Ok(Node::Object(entries))
    }
}

/// Deserializes an object key. JSON keys are strings; YAML keys may be scalars of any type and
/// become their text, as MarbleRun's YAML-to-JSON conversion does.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or scalar key")
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }
}

/// Writes `node` as compact JSON with object keys sorted and `<`, `>`, `&`, U+2028 and U+2029
/// escaped: the bytes Go's `json.Marshal` produces for the same value, which is what
/// MarbleRun's CLI uploads for a YAML manifest.
pub(crate) fn to_canonical_json(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    write_node(node, &mut out);
    out
}

fn write_node(node: &Node, out: &mut Vec<u8>) {
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Node::Number(Number::Unsigned(u)) => out.extend_from_slice(u.to_string().as_bytes()),
        Node::Number(Number::Negative(i)) => out.extend_from_slice(i.to_string().as_bytes()),
        Node::Number(Number::Float(f)) => write_float(*f, out),
        Node::String(s) => write_string(s, out),
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(item, out);
            }
            out.push(b']');
        }
        Node::Object(entries) => {
            let mut sorted: Vec<&(String, Node)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push(b'{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_node(value, out);
            }
            out.push(b'}');
        }
    }
}

fn write_float(f: f64, out: &mut Vec<u8>) {
    if !f.is_finite() {
        // JSON has no infinities or NaN; Go's encoder refuses them, the nearest value is null.
        out.extend_from_slice(b"null");
    } else if f == f.trunc() && f.abs() < 1e21 {
        out.extend_from_slice(format!("{f:.0}").as_bytes());
    } else {
        out.extend_from_slice(f.to_string().as_bytes());
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
            }
            c if u32::from(c) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicate_keys_in_json_and_yaml() {
        let err = parse_json(br#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"a\""), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse_yaml("a: 1\na: 2\n").unwrap_err();
        assert!(err.to_string().contains("invalid yaml"), "{err}");
    }

    #[test]
    fn caps_nesting() {
        let deep = "[".repeat(MAX_NESTING_DEPTH + 1) + &"]".repeat(MAX_NESTING_DEPTH + 1);
        let err = parse_json(deep.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nesting deeper"), "{err}");
        let ok = "[".repeat(MAX_NESTING_DEPTH) + &"]".repeat(MAX_NESTING_DEPTH);
        parse_json(ok.as_bytes()).unwrap();
        let deep_yaml = "[".repeat(MAX_NESTING_DEPTH + 1) + &"]".repeat(MAX_NESTING_DEPTH + 1);
        assert!(parse_yaml(&deep_yaml).is_err());
    }

    #[test]
    fn caps_yaml_alias_expansion() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(parse_yaml(&doc).is_err());
    }

    #[test]
    fn canonical_json_sorts_and_escapes_like_go() {
        let node = parse_yaml("b: \"<&>\"\na: [1, -2, 1.5, true, null]\n").unwrap();
        assert_eq!(
            String::from_utf8(to_canonical_json(&node)).unwrap(),
            r#"{"a":[1,-2,1.5,true,null],"b":"\u003c\u0026\u003e"}"#
        );
    }

    #[test]
    fn yaml_scalars_are_typed_like_marblerun_cli_yaml() {
        // MarbleRun's CLI converts YAML with a YAML 1.1 parser: `yes` is a boolean there too.
        let node = parse_yaml("a: yes\nb: 0x10\nc: ~\nd: '1'\n").unwrap();
        let Node::Object(entries) = node else {
            panic!("{node:?}")
        };
        assert_eq!(entries[0].1, Node::Bool(true));
        assert_eq!(entries[1].1, Node::Number(Number::Unsigned(16)));
        assert_eq!(entries[2].1, Node::Null);
        assert_eq!(entries[3].1, Node::String("1".into()));
    }

    #[test]
    fn refuses_trailing_content() {
        assert!(parse_json(b"{} {}").is_err());
    }
}
