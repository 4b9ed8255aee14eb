//! Why a policy document was refused.
//!
//! Every variant that concerns one member carries its [`DocPath`], displayed as
//! `anyOf[0].allOf[2]`; an error about the document itself says `policy`.

use std::fmt;

use quarry_common::DocPath;

/// A policy document that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The bytes are not JSON.
    #[error("policy is not valid JSON at line {line} column {column}: {detail}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's description.
        detail: String,
    },
    /// A required member is absent (`version`, `anyOf`, `authority`).
    #[error("{}: missing member {name:?}", At(path))]
    MissingMember {
        /// The object that lacks it.
        path: DocPath,
        /// The member's name.
        name: &'static str,
    },
    /// A member has the wrong JSON type.
    #[error("{}: expected {expected}, found {found}", At(path))]
    WrongType {
        /// The member.
        path: DocPath,
        /// What the grammar wants.
        expected: &'static str,
        /// What the document has.
        found: &'static str,
    },
    /// `version` is not one the grammar defines.
    #[error("unsupported policy version {version:?} (expected \"1.0.0\")")]
    UnsupportedVersion {
        /// The version as written.
        version: String,
    },
    /// An `anyOf` or `allOf` array has no element.
    #[error("{}: the array is empty", At(path))]
    EmptyArray {
        /// The array.
        path: DocPath,
    },
    /// The document has `allOf` at the top level, where the grammar wants `anyOf` of authority
    /// statements.
    #[error("policy: top-level allOf is not allowed; list authority statements under anyOf")]
    TopLevelAllOf,
    /// A member that the grammar does not define at this place.
    #[error("{}: unknown member {name:?}", At(path))]
    UnknownMember {
        /// The object that has it.
        path: DocPath,
        /// The member's name.
        name: String,
    },
    /// The `authority` is the empty string.
    #[error("{}: authority is empty", At(path))]
    EmptyAuthority {
        /// The `authority` member.
        path: DocPath,
    },
    /// An authority statement with neither `allOf` nor `anyOf`.
    #[error("{}: an authority statement needs allOf or anyOf", At(path))]
    MissingGroup {
        /// The statement.
        path: DocPath,
    },
    /// An object with both `allOf` and `anyOf`.
    #[error("{}: both allOf and anyOf; use exactly one (nest the other)", At(path))]
    BothGroups {
        /// The object.
        path: DocPath,
    },
    /// A group condition that also has other members (`claim`, an operator).
    #[error("{}: a group cannot also have member {name:?}", At(path))]
    MixedCondition {
        /// The condition.
        path: DocPath,
        /// The extra member.
        name: String,
    },
    /// A condition that is neither a group nor has a `claim`.
    #[error(
        "{}: a condition needs \"claim\" and an operator, or allOf/anyOf",
        At(path)
    )]
    MissingClaim {
        /// The condition.
        path: DocPath,
    },
    /// A claim condition in the pre-GA form `{"claim", "condition", "value"}`.
    #[error(
        "{}: legacy condition format (\"condition\"/\"value\"); write {{\"claim\": ..., \"equals\": ...}}",
        At(path)
    )]
    LegacyCondition {
        /// The condition.
        path: DocPath,
    },
    /// A claim path that is empty or has an empty segment (`a..b`).
    #[error("{}: invalid claim path {claim:?}", At(path))]
    InvalidClaimPath {
        /// The `claim` member.
        path: DocPath,
        /// The path as written.
        claim: String,
    },
    /// A member of a claim condition that is not an operator.
    #[error(
        "{}: unknown operator {name:?} (expected one of equals, notEquals, less, lessOrEquals, \
         greater, greaterOrEquals, exists)",
        At(path)
    )]
    UnknownOperator {
        /// The condition.
        path: DocPath,
        /// The member's name.
        name: String,
    },
    /// A claim condition with more than one operator.
    #[error("{}: more than one operator ({first} and {second})", At(path))]
    MultipleOperators {
        /// The condition.
        path: DocPath,
        /// The first operator found.
        first: &'static str,
        /// The second.
        second: &'static str,
    },
    /// A claim condition without an operator.
    #[error("{}: claim condition for {claim:?} has no operator", At(path))]
    MissingOperator {
        /// The condition.
        path: DocPath,
        /// The claim it tests.
        claim: String,
    },
    /// Groups nested deeper than [`crate::MAX_CONDITION_DEPTH`].
    #[error("{}: conditions nested more than {limit} levels deep", At(path))]
    TooDeep {
        /// The group that is too deep.
        path: DocPath,
        /// The limit.
        limit: usize,
    },
}

/// Displays a path, or `policy` for the document root.
pub(crate) struct At<'a>(pub(crate) &'a DocPath);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_root() {
            f.write_str("policy")
        } else {
            write!(f, "{}", self.0)
        }
    }
}
