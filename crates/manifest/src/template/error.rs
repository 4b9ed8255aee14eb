//! Why a template failed, and the list of failures the dry run returns, each with the path of
//! the failing value (`Marbles["web"].Parameters.Env["X"]`).
//!
//! Messages name the reference or encoder at fault but never contain secret bytes: the
//! engine only ever sees references such as `.Secrets.k.Private`, never their values.

use std::fmt;

use quarry_common::DocPath;

use super::encode::{Encoder, Section};
use super::shape::ShapeError;

/// Why one template (one `Files` or `Env` value) cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The template does not parse (for example an unterminated action).
    #[error("template syntax error: {message}")]
    Syntax {
        /// The parser's description, with line and column.
        message: String,
    },
    /// The template calls a function that does not exist.
    #[error("function {name:?} is not defined")]
    UnknownFunction {
        /// The function's name.
        name: String,
    },
    /// The template uses an encoder that this section does not offer (`raw` in `Env`,
    /// `string` in `Files`).
    #[error("encoder {encoder} is not allowed in {section} (allowed: {})", section.encoders())]
    EncoderNotAllowed {
        /// The encoder.
        encoder: Encoder,
        /// Where it was used.
        section: Section,
    },
    /// The template names a secret, part or field that does not exist.
    #[error("{name:?} does not exist: no such secret, part or field")]
    UnknownName {
        /// The name that was looked up.
        name: String,
    },
    /// An encoder was called with a wrong number of arguments.
    #[error("{encoder} takes 1 argument, got {count}")]
    ArgumentCount {
        /// The encoder.
        encoder: Encoder,
        /// The number of arguments it got.
        count: usize,
    },
    /// An encoder got nil (`{{ hex nil }}`, or a variable or `with` that holds nothing).
    #[error("{encoder} got nil instead of a secret")]
    MissingSecret {
        /// The encoder.
        encoder: Encoder,
    },
    /// An encoder got something that is neither a secret nor one of its parts.
    #[error("{encoder} got a {got}, not a secret or one of its parts")]
    NotSecret {
        /// The encoder.
        encoder: Encoder,
        /// The type of value it got.
        got: &'static str,
    },
    /// `pem` was given a whole secret instead of one of its parts.
    #[error("pem needs a part of {reference} (.Cert, .Public or .Private), not the whole secret")]
    PemOfWholeSecret {
        /// The secret, as written in templates (`.Secrets.k`).
        reference: String,
    },
    /// `string` was given something other than a whole `plain` secret.
    #[error("string needs a whole plain secret, {reference} is {what}")]
    StringNeedsPlain {
        /// The reference given, as written in templates.
        reference: String,
        /// What it is instead (`a symmetric-key secret`, `a part`, ...).
        what: String,
    },
    /// The selected bytes are empty (an absent part, or a value not uploaded yet).
    #[error("{reference} is empty")]
    EmptyValue {
        /// The reference, as written in templates (`.MarbleRun.RootCA.Private`).
        reference: String,
    },
    /// `string` was applied to a plain secret that contains a NUL byte.
    #[error("string of {reference}: the value contains a NUL byte")]
    NulInString {
        /// The reference, as written in templates.
        reference: String,
    },
    /// Secret material is written without an encoder (`{{ .Secrets.k }}`).
    #[error(
        "{reference} is written without an encoder; use {} on it",
        section.encoders()
    )]
    BareReference {
        /// The reference, as written in templates.
        reference: String,
        /// Where it was written.
        section: Section,
    },
    /// The result of an encoder was used as a value (compared, measured, reformatted or
    /// dropped) instead of being written out.
    #[error("the result of {encoder} is used as a value; encoder results can only be written out")]
    EncoderResultUsed {
        /// The encoder.
        encoder: Encoder,
    },
    /// An encoder's result was cut or changed by the template (for example by `slice`), so it
    /// can no longer be written out.
    #[error("an encoder result was altered by the template before being written out")]
    EncoderResultAltered,
    /// Secret material was passed to a built-in function that would see only a reference,
    /// not the value (`urlquery`, `js`, `html`, `index`, `slice`, comparisons).
    #[error("{function} cannot be applied to secret material")]
    SecretPassedToFunction {
        /// The built-in function.
        function: &'static str,
    },
    /// The template failed while executing, for a reason other than the ones above.
    #[error("template execution failed: {message}")]
    Execution {
        /// The engine's description.
        message: String,
    },
    /// The template contains a character Quarry reserves for its own bookkeeping.
    #[error("template contains the reserved character U+{codepoint:04X}")]
    ReservedCharacter {
        /// The character's code point.
        codepoint: u32,
    },
    /// The rendered value grew beyond the limit.
    #[error("rendered value is larger than {limit} bytes")]
    OutputTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The template called encoders more often than allowed.
    #[error("template calls encoders more than {limit} times")]
    TooManyEncoderCalls {
        /// The limit.
        limit: usize,
    },
    /// An `Env` value contains a NUL byte, which no environment variable can hold.
    #[error("env value contains a NUL byte at offset {offset}")]
    NulInEnv {
        /// The byte offset of the first NUL.
        offset: usize,
    },
    /// An `Env` value is not valid UTF-8.
    #[error("env value is not valid utf-8 at offset {offset}")]
    EnvNotUtf8 {
        /// The byte offset of the first invalid sequence.
        offset: usize,
    },
    /// No placeholder can be made for a secret's shape.
    #[error(transparent)]
    Shape(ShapeError),
}

/// One failing value and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    /// Where the value is, e.g. `Marbles["web"].Parameters.Env["X"]`.
    pub path: DocPath,
    /// Why it failed.
    pub cause: RenderError,
}

impl TemplateProblem {
    /// A problem at `path`.
    pub fn new(path: DocPath, cause: RenderError) -> Self {
        Self { path, cause }
    }
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.cause)
    }
}

/// Every failing value of a render or dry run; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateErrors {
    problems: Vec<TemplateProblem>,
}

impl TemplateErrors {
    /// The failures, or `None` if there are none.
    pub fn from_problems(problems: Vec<TemplateProblem>) -> Option<Self> {
        (!problems.is_empty()).then_some(Self { problems })
    }

    /// The failures, in document order.
    pub fn problems(&self) -> &[TemplateProblem] {
        &self.problems
    }

    /// The failures, by value.
    pub fn into_problems(self) -> Vec<TemplateProblem> {
        self.problems
    }
}

impl fmt::Display for TemplateErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} templates failed", many.len())?;
                for problem in many {
                    write!(f, "; {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for TemplateErrors {}
