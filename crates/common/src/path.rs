//! Paths into documents, written the same way in CLI output and API messages:
//! `Marbles["web"].Parameters.Env["X"]`, `Users["alice"].Roles[0]`.
//!
//! Struct fields are joined with dots; map keys are quoted as JSON strings inside brackets, so a
//! key containing `"` or `]` stays unambiguous; list indices are bare numbers in brackets.

use std::fmt;

/// One step of a [`DocPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A named field of a structure (`Package`).
    Field(String),
    /// A key of a map (`["web"]`).
    Key(String),
    /// A position in a list (`[0]`).
    Index(usize),
}

/// A path from the root of a document to one of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DocPath {
    segments: Vec<Segment>,
}

impl DocPath {
    /// The path of the document's root, displayed as the empty string.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path followed by the field `name`.
    pub fn field(&self, name: &str) -> Self {
        self.with(Segment::Field(name.to_owned()))
    }

    /// This path followed by the map key `key`.
    pub fn key(&self, key: &str) -> Self {
        self.with(Segment::Key(key.to_owned()))
    }

    /// This path followed by the list index `index`.
    pub fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    /// The steps of this path, from the root.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    fn with(&self, segment: Segment) -> Self {
        let mut segments = self.segments.clone();
        segments.push(segment);
        Self { segments }
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Key(key) => {
                    f.write_str("[\"")?;
                    write_escaped(f, key)?;
                    f.write_str("\"]")?;
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Writes `key` as the inside of a JSON string literal, escaping also what JSON allows raw but a
/// log line or terminal would act on: DEL, the C1 controls, the Unicode line and paragraph
/// separators, and the bidirectional formatting characters, which make a terminal or log viewer
/// show the text around them in another order than it has.
fn write_escaped(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    for c in key.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || is_bidi_control(c) => {
                write!(f, "\\u{:04x}", u32::from(c))?;
            }
            c => write!(f, "{c}")?,
        }
    }
    Ok(())
}

/// The Unicode bidirectional formatting characters: ALM, LRM, RLM, the embeddings and overrides
/// LRE..RLO with PDF, and the isolates LRI..PDI.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_bidirectional_formatting_characters() {
        let path = DocPath::root()
            .field("Users")
            .key("admin\u{202E}nimda\u{2066}\u{2069}\u{200F}\u{061C}");
        assert_eq!(
            path.to_string(),
            r#"Users["admin\u202enimda\u2066\u2069\u200f\u061c"]"#
        );
    }

    #[test]
    fn keys_escape_every_control_and_line_separator() {
        let path = DocPath::root()
            .field("Users")
            .key("a\"b\\c\nd\re\tf\u{1}\u{7f}\u{85}\u{2028}\u{2029}é");
        assert_eq!(
            path.to_string(),
            r#"Users["a\"b\\c\nd\re\tf\u0001\u007f\u0085\u2028\u2029é"]"#
        );
    }

    #[test]
    fn formats_fields_keys_and_indices() {
        let path = DocPath::root()
            .field("Marbles")
            .key("web")
            .field("Parameters")
            .field("Env");
        assert_eq!(
            path.key("X").to_string(),
            r#"Marbles["web"].Parameters.Env["X"]"#
        );
        assert_eq!(
            DocPath::root()
                .field("Users")
                .key("a")
                .field("Roles")
                .index(0)
                .to_string(),
            r#"Users["a"].Roles[0]"#
        );
        assert_eq!(DocPath::root().to_string(), "");
    }

    #[test]
    fn quotes_keys_that_contain_brackets_and_quotes() {
        let path = DocPath::root().field("Secrets").key(r#"a"]b"#);
        assert_eq!(path.to_string(), r#"Secrets["a\"]b"]"#);
    }
}
