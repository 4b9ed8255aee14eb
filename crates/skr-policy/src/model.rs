//! The release policy document: its model, and the parser that turns JSON into it.
//!
//! The parser walks a `serde_json::Value` by hand instead of deriving `Deserialize`, so that
//! every refusal names the member it is about (`anyOf[0].allOf[3]: unknown operator "equal"`)
//! and so that the grammar's rules that serde cannot express (exactly one of `allOf`/`anyOf`,
//! exactly one operator per claim condition, non-empty arrays) are checked in one place.
//!
//! Invariants of a parsed [`ReleasePolicy`]: `version` is `"1.0.0"`; every array holds at least
//! one element; every claim path has non-empty segments; condition values are strings, numbers
//! or booleans (`exists` takes a boolean); nesting is at most [`MAX_CONDITION_DEPTH`] deep.

use std::fmt;

use quarry_common::DocPath;
use serde_json::{Map, Value};

use crate::error::PolicyError;

/// The only policy version the grammar defines. `"1.0"` is accepted and stored as this, as the
/// real service does.
pub const POLICY_VERSION: &str = "1.0.0";

/// The deepest nesting of `anyOf`/`allOf` groups accepted below an authority statement. Each
/// group is two JSON levels, so this stays well inside the JSON nesting limit of the APIs
/// (`quarry_common::limits::MAX_NESTING_DEPTH`).
pub const MAX_CONDITION_DEPTH: usize = 24;

/// A key release policy: the key is released when the token satisfies any of the authority
/// statements.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasePolicy {
    /// The grammar version, normalised to [`POLICY_VERSION`].
    pub version: String,
    /// The authority statements (top-level `anyOf`), at least one.
    pub any_of: Vec<AuthorityStatement>,
}

/// One authority statement: the conditions a token from `authority` must meet.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorityStatement {
    /// The attestation service, compared with the token's `iss` claim.
    pub authority: String,
    /// The statement's `allOf` or `anyOf`.
    pub conditions: Group,
}

/// Whether a group needs all or any of its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// `allOf`: every member must hold.
    AllOf,
    /// `anyOf`: at least one member must hold.
    AnyOf,
}

impl GroupKind {
    /// The member name in the policy document.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::AllOf => "allOf",
            GroupKind::AnyOf => "anyOf",
        }
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `allOf` or `anyOf` list of conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// All or any.
    pub kind: GroupKind,
    /// The conditions, at least one.
    pub members: Vec<Condition>,
}

/// One element of a group.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A test of one claim.
    Claim(ClaimCondition),
    /// A nested `allOf` or `anyOf`.
    Group(Group),
}

/// A claim condition: `{"claim": "x-ms-sgx-svn", "greaterOrEquals": 2}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimCondition {
    /// The claim name, or a dotted path into nested objects (`x-ms-runtime.client-payload.nonce`).
    pub claim: String,
    /// The comparison.
    pub operator: Operator,
    /// The value compared with: a string, number or boolean (a boolean for `exists`).
    pub value: Value,
}

/// The comparison of a claim condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// Equal, with the loose comparison across JSON types (see [`crate::compare`]).
    Equals,
    /// Present and not equal (loosely).
    NotEquals,
    /// Numerically less than the value.
    Less,
    /// Numerically less than or equal to the value.
    LessOrEquals,
    /// Numerically greater than the value.
    Greater,
    /// Numerically greater than or equal to the value.
    GreaterOrEquals,
    /// `true`: the claim is present; `false`: it is absent.
    Exists,
}

impl Operator {
    /// Every operator, in the order the grammar lists them.
    pub const ALL: [Operator; 7] = [
        Operator::Equals,
        Operator::NotEquals,
        Operator::Less,
        Operator::LessOrEquals,
        Operator::Greater,
        Operator::GreaterOrEquals,
        Operator::Exists,
    ];

    /// The member name in the policy document.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::NotEquals => "notEquals",
            Operator::Less => "less",
            Operator::LessOrEquals => "lessOrEquals",
            Operator::Greater => "greater",
            Operator::GreaterOrEquals => "greaterOrEquals",
            Operator::Exists => "exists",
        }
    }

    /// The operator whose member name is exactly `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ReleasePolicy {
    /// Parses a policy from the UTF-8 JSON bytes a key's `release_policy.data` carries.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| PolicyError::Json {
            line: e.line(),
            column: e.column(),
            detail: json_error_detail(&e),
        })?;
        Self::from_value(&value)
    }

    /// Parses a policy that is already a JSON value.
    pub fn from_value(value: &Value) -> Result<Self, PolicyError> {
        let root = DocPath::root();
        let object = as_object(value, &root)?;
        for name in object.keys() {
            match name.as_str() {
                "version" | "anyOf" => {}
                "allOf" => return Err(PolicyError::TopLevelAllOf),
                _ => {
                    return Err(PolicyError::UnknownMember {
                        path: root,
                        name: name.clone(),
                    });
                }
            }
        }
        let version = parse_version(object)?;
        let statements = required_array(object, "anyOf", &root)?;
        let any_of = statements
            .iter()
            .enumerate()
            .map(|(i, s)| parse_statement(s, &root.field("anyOf").index(i)))
            .collect::<Result<_, _>>()?;
        Ok(Self { version, any_of })
    }

    /// The policy as the service stores and returns it: compact JSON, members in alphabetical
    /// order at every level, `version` normalised.
    pub fn to_canonical_json(&self) -> String {
        let statements = self.any_of.iter().map(statement_to_value).collect();
        let mut root = Map::new();
        root.insert("anyOf".into(), Value::Array(statements));
        root.insert("version".into(), Value::String(self.version.clone()));
        Value::Object(root).to_string()
    }
}

fn statement_to_value(statement: &AuthorityStatement) -> Value {
    let mut object = Map::new();
    let members = statement
        .conditions
        .members
        .iter()
        .map(condition_to_value)
        .collect();
    // "allOf" and "anyOf" both sort before "authority".
    object.insert(
        statement.conditions.kind.as_str().into(),
        Value::Array(members),
    );
    object.insert(
        "authority".into(),
        Value::String(statement.authority.clone()),
    );
    Value::Object(object)
}

fn condition_to_value(condition: &Condition) -> Value {
    let mut object = Map::new();
    match condition {
        Condition::Claim(c) => {
            // "claim" sorts before every operator name.
            object.insert("claim".into(), Value::String(c.claim.clone()));
            object.insert(c.operator.as_str().into(), c.value.clone());
        }
        Condition::Group(g) => {
            let members = g.members.iter().map(condition_to_value).collect();
            object.insert(g.kind.as_str().into(), Value::Array(members));
        }
    }
    Value::Object(object)
}

/// serde_json's message without its " at line L column C" suffix (the error has them as fields).
fn json_error_detail(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn parse_version(object: &Map<String, Value>) -> Result<String, PolicyError> {
    let path = DocPath::root().field("version");
    let Some(value) = object.get("version") else {
        return Err(PolicyError::MissingMember {
            path: DocPath::root(),
            name: "version",
        });
    };
    let Value::String(version) = value else {
        return Err(wrong_type(&path, "a string", value));
    };
    match version.as_str() {
        "1.0.0" | "1.0" => Ok(POLICY_VERSION.to_owned()),
        _ => Err(PolicyError::UnsupportedVersion {
            version: version.clone(),
        }),
    }
}

fn parse_statement(value: &Value, path: &DocPath) -> Result<AuthorityStatement, PolicyError> {
    let object = as_object(value, path)?;
    for name in object.keys() {
        if !matches!(name.as_str(), "authority" | "allOf" | "anyOf") {
            return Err(unknown_member(path, name));
        }
    }
    let authority = match object.get("authority") {
        None => {
            return Err(PolicyError::MissingMember {
                path: path.clone(),
                name: "authority",
            });
        }
        Some(Value::String(s)) if s.is_empty() => {
            return Err(PolicyError::EmptyAuthority {
                path: path.field("authority"),
            });
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type(&path.field("authority"), "a string", other)),
    };
    let Some(conditions) = parse_group_members(object, path, 0)? else {
        return Err(PolicyError::MissingGroup { path: path.clone() });
    };
    Ok(AuthorityStatement {
        authority,
        conditions,
    })
}

/// The `allOf`/`anyOf` of `object`, `None` if it has neither.
fn parse_group_members(
    object: &Map<String, Value>,
    path: &DocPath,
    depth: usize,
) -> Result<Option<Group>, PolicyError> {
    let kind = match (object.contains_key("allOf"), object.contains_key("anyOf")) {
        (true, true) => return Err(PolicyError::BothGroups { path: path.clone() }),
        (true, false) => GroupKind::AllOf,
        (false, true) => GroupKind::AnyOf,
        (false, false) => return Ok(None),
    };
    if depth >= MAX_CONDITION_DEPTH {
        return Err(PolicyError::TooDeep {
            path: path.clone(),
            limit: MAX_CONDITION_DEPTH,
        });
    }
    let items = required_array(object, kind.as_str(), path)?;
    let group_path = path.field(kind.as_str());
    let members = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_condition(item, &group_path.index(i), depth + 1))
        .collect::<Result<_, _>>()?;
    Ok(Some(Group { kind, members }))
}

fn parse_condition(value: &Value, path: &DocPath, depth: usize) -> Result<Condition, PolicyError> {
    let object = as_object(value, path)?;
    if object.contains_key("allOf") || object.contains_key("anyOf") {
        if let Some(name) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "allOf" | "anyOf"))
        {
            return Err(PolicyError::MixedCondition {
                path: path.clone(),
                name: name.clone(),
            });
        }
        let group = parse_group_members(object, path, depth)?;
        // Both keys were checked above, so a group is present.
        return group
            .map(Condition::Group)
            .ok_or(PolicyError::MissingGroup { path: path.clone() });
    }
    parse_claim_condition(object, path).map(Condition::Claim)
}

fn parse_claim_condition(
    object: &Map<String, Value>,
    path: &DocPath,
) -> Result<ClaimCondition, PolicyError> {
    if object.contains_key("condition") || object.contains_key("value") {
        return Err(PolicyError::LegacyCondition { path: path.clone() });
    }
    let claim = match object.get("claim") {
        None => return Err(PolicyError::MissingClaim { path: path.clone() }),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type(&path.field("claim"), "a string", other)),
    };
    if claim.is_empty() || claim.split('.').any(str::is_empty) {
        return Err(PolicyError::InvalidClaimPath {
            path: path.field("claim"),
            claim,
        });
    }

    let mut found: Option<(Operator, &Value)> = None;
    for (name, value) in object {
        if name == "claim" {
            continue;
        }
        let Some(operator) = Operator::from_name(name) else {
            return Err(PolicyError::UnknownOperator {
                path: path.clone(),
                name: name.clone(),
            });
        };
        if let Some((first, _)) = found {
            return Err(PolicyError::MultipleOperators {
                path: path.clone(),
                first: first.as_str(),
                second: operator.as_str(),
            });
        }
        found = Some((operator, value));
    }
    let Some((operator, value)) = found else {
        return Err(PolicyError::MissingOperator {
            path: path.clone(),
            claim,
        });
    };

    let value_path = path.field(operator.as_str());
    let value = match (operator, value) {
        (Operator::Exists, Value::Bool(_)) => value.clone(),
        (Operator::Exists, other) => return Err(wrong_type(&value_path, "a boolean", other)),
        (_, Value::String(_) | Value::Number(_) | Value::Bool(_)) => value.clone(),
        (_, other) => {
            return Err(wrong_type(
                &value_path,
                "a string, number or boolean",
                other,
            ));
        }
    };
    Ok(ClaimCondition {
        claim,
        operator,
        value,
    })
}

fn required_array<'a>(
    object: &'a Map<String, Value>,
    name: &'static str,
    path: &DocPath,
) -> Result<&'a Vec<Value>, PolicyError> {
    let member_path = path.field(name);
    match object.get(name) {
        None => Err(PolicyError::MissingMember {
            path: path.clone(),
            name,
        }),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(PolicyError::EmptyArray { path: member_path })
        }
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(&member_path, "an array", other)),
    }
}

fn as_object<'a>(value: &'a Value, path: &DocPath) -> Result<&'a Map<String, Value>, PolicyError> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", value))
}

fn unknown_member(path: &DocPath, name: &str) -> PolicyError {
    PolicyError::UnknownMember {
        path: path.clone(),
        name: name.to_owned(),
    }
}

fn wrong_type(path: &DocPath, expected: &'static str, found: &Value) -> PolicyError {
    PolicyError::WrongType {
        path: path.clone(),
        expected,
        found: json_type(found),
    }
}

/// The JSON type of `value`, for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ReleasePolicy, PolicyError> {
        ReleasePolicy::from_json(text.as_bytes())
    }

    fn err(text: &str) -> String {
        parse(text).expect_err(text).to_string()
    }

    #[test]
    fn parses_nested_groups_and_every_operator() {
        let policy = parse(
            r#"{"version":"1.0.0","anyOf":[{"authority":"https://a","allOf":[
                {"claim":"a","equals":"x"},{"claim":"b","notEquals":1},{"claim":"c","less":2},
                {"claim":"d","lessOrEquals":3},{"claim":"e","greater":4},
                {"claim":"f","greaterOrEquals":5},{"claim":"g.h","exists":true},
                {"anyOf":[{"claim":"i","equals":true},{"allOf":[{"claim":"j","equals":false}]}]}
            ]}]}"#,
        )
        .unwrap();
        let members = &policy.any_of[0].conditions.members;
        assert_eq!(members.len(), 8);
        for (member, op) in members.iter().zip(Operator::ALL) {
            let Condition::Claim(c) = member else {
                panic!("{member:?}")
            };
            assert_eq!(c.operator, op);
        }
        let Condition::Group(g) = &members[7] else {
            panic!()
        };
        assert_eq!(g.kind, GroupKind::AnyOf);
    }

    #[test]
    fn normalises_version_and_sorts_members_like_the_service() {
        let policy = parse(
            r#"{"version":"1.0","anyOf":[{"authority":"https://a/","allOf":[{"equals":"true","claim":"sdk-test"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            policy.to_canonical_json(),
            r#"{"anyOf":[{"allOf":[{"claim":"sdk-test","equals":"true"}],"authority":"https://a/"}],"version":"1.0.0"}"#
        );
    }

    #[test]
    fn refuses_with_the_path_of_the_failing_member() {
        let cases = [
            (r#"{"anyOf":[]}"#, "missing member \"version\""),
            (
                r#"{"version":"0.2","anyOf":[]}"#,
                "unsupported policy version \"0.2\"",
            ),
            (
                r#"{"version":1,"anyOf":[]}"#,
                "version: expected a string, found a number",
            ),
            (r#"{"version":"1.0.0"}"#, "missing member \"anyOf\""),
            (
                r#"{"version":"1.0.0","anyOf":[]}"#,
                "anyOf: the array is empty",
            ),
            (r#"{"version":"1.0.0","allOf":[]}"#, "top-level allOf"),
            (
                r#"{"version":"1.0.0","anyOf":[{"allOf":[{"claim":"a","equals":1}]}]}"#,
                "anyOf[0]: missing member \"authority\"",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x"}]}"#,
                "anyOf[0]: an authority statement needs allOf or anyOf",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a","equal":1}]}]}"#,
                "anyOf[0].allOf[0]: unknown operator \"equal\"",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a","equals":1,"less":2}]}]}"#,
                "anyOf[0].allOf[0]: more than one operator (equals and less)",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a"}]}]}"#,
                "anyOf[0].allOf[0]: claim condition for \"a\" has no operator",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a","equals":{}}]}]}"#,
                "anyOf[0].allOf[0].equals: expected a string, number or boolean, found an object",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a","exists":"yes"}]}]}"#,
                "anyOf[0].allOf[0].exists: expected a boolean, found a string",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a..b","equals":1}]}]}"#,
                "anyOf[0].allOf[0].claim: invalid claim path \"a..b\"",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a","condition":"equals","value":1}]}]}"#,
                "legacy",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[],"anyOf":[]}]}"#,
                "anyOf[0]: both allOf and anyOf",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"anyOf":[{"claim":"a","equals":1}],"claim":"b"}]}]}"#,
                "anyOf[0].allOf[0]: a group cannot also have member \"claim\"",
            ),
            (
                r#"{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a","equals":1}]}],"extra":1}"#,
                "unknown member \"extra\"",
            ),
            ("{\"version\":", "not valid JSON at line 1 column 11"),
            ("[]", "policy: expected an object, found an array"),
        ];
        for (text, expected) in cases {
            let message = err(text);
            assert!(
                message.contains(expected),
                "{text}\n  gave {message:?}\n  want {expected:?}"
            );
        }
    }

    #[test]
    fn refuses_nesting_beyond_the_limit() {
        let mut condition = r#"{"claim":"a","equals":1}"#.to_owned();
        for _ in 0..MAX_CONDITION_DEPTH + 1 {
            condition = format!(r#"{{"allOf":[{condition}]}}"#);
        }
        let text =
            format!(r#"{{"version":"1.0.0","anyOf":[{{"authority":"x","allOf":[{condition}]}}]}}"#);
        assert!(err(&text).contains("nested more than 24"), "{}", err(&text));
    }
}
