//! Evaluation of a [`ReleasePolicy`] against the claims of an attestation token, with the
//! reason each authority statement and each condition held or not.
//!
//! A token satisfies the policy when some authority statement whose `authority` is exactly the
//! token's `iss` has its conditions met. Every condition is evaluated (no short-circuit), so the
//! explanation lists every failing claim, not only the first.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use quarry_common::DocPath;
use serde_json::Value;

use crate::compare::{Equality, loosely_equal, numeric_order};
use crate::model::{ClaimCondition, Condition, Group, GroupKind, Operator, ReleasePolicy};

/// The outcome for the whole policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The token satisfies the policy: the key may be released.
    Released,
    /// It does not.
    Refused,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Released => "released",
            Verdict::Refused => "refused",
        })
    }
}

/// The result of evaluating a policy against token claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Released or refused.
    pub verdict: Verdict,
    /// The token's `iss` claim, if it has a string one.
    pub issuer: Option<String>,
    /// One entry per authority statement, in policy order.
    pub authorities: Vec<AuthorityEvaluation>,
}

/// How one authority statement fared.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorityEvaluation {
    /// Where the statement is in the policy (`anyOf[0]`).
    pub path: DocPath,
    /// The statement's authority.
    pub authority: String,
    /// Whether the authority is exactly the token's issuer.
    pub issuer_matches: bool,
    /// Whether the statement's conditions are met (evaluated even when the issuer differs).
    pub conditions_hold: bool,
    /// The statement's top-level group.
    pub conditions: ConditionEvaluation,
}

impl AuthorityEvaluation {
    /// Whether this statement lets the key be released.
    pub fn held(&self) -> bool {
        self.issuer_matches && self.conditions_hold
    }

    /// Why the statement held or not, in one sentence.
    pub fn reason(&self, issuer: Option<&str>) -> String {
        let issuer_text = match issuer {
            Some(iss) => format!("the token issuer {iss:?}"),
            None => "the token, which has no issuer (iss)".to_owned(),
        };
        match (self.issuer_matches, self.conditions_hold) {
            (true, true) => {
                format!(
                    "authority {:?} matches {issuer_text} and its conditions hold",
                    self.authority
                )
            }
            (true, false) => {
                format!(
                    "authority {:?} matches {issuer_text} but its conditions do not hold",
                    self.authority
                )
            }
            (false, _) => format!(
                "authority {:?} does not match {issuer_text}",
                self.authority
            ),
        }
    }
}

/// How one condition fared; groups hold their members' evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionEvaluation {
    /// Where the condition is in the policy (`anyOf[0].allOf[1]`).
    pub path: DocPath,
    /// Whether it held.
    pub held: bool,
    /// Why, in words that name the claim, the expected and the actual value.
    pub reason: String,
    /// What kind of condition it was.
    pub detail: ConditionDetail,
}

/// The kind of a [`ConditionEvaluation`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionDetail {
    /// A claim condition.
    Claim {
        /// The claim path.
        claim: String,
        /// The operator.
        operator: Operator,
        /// The policy's value.
        expected: Value,
        /// The token's value, `None` if the claim is absent.
        actual: Option<Value>,
    },
    /// An `allOf`/`anyOf` group.
    Group {
        /// All or any.
        kind: GroupKind,
        /// The members' evaluations.
        members: Vec<ConditionEvaluation>,
    },
}

impl ReleasePolicy {
    /// Evaluates the policy against the claims of a (verified) attestation token.
    pub fn evaluate(&self, claims: &Value) -> Evaluation {
        let issuer = claims.get("iss").and_then(Value::as_str).map(str::to_owned);
        let authorities: Vec<_> = self
            .any_of
            .iter()
            .enumerate()
            .map(|(i, statement)| {
                let path = DocPath::root().field("anyOf").index(i);
                let conditions = evaluate_group(&statement.conditions, &path, claims);
                AuthorityEvaluation {
                    issuer_matches: issuer.as_deref() == Some(statement.authority.as_str()),
                    conditions_hold: conditions.held,
                    authority: statement.authority.clone(),
                    path,
                    conditions,
                }
            })
            .collect();
        let verdict = if authorities.iter().any(AuthorityEvaluation::held) {
            Verdict::Released
        } else {
            Verdict::Refused
        };
        Evaluation {
            verdict,
            issuer,
            authorities,
        }
    }
}

impl Evaluation {
    /// Whether the key may be released.
    pub fn is_released(&self) -> bool {
        self.verdict == Verdict::Released
    }

    /// The claim conditions that did not hold in the statements whose authority matches the
    /// token issuer: the claims a refused caller has to fix.
    pub fn failed_claims(&self) -> Vec<&ConditionEvaluation> {
        let mut out = Vec::new();
        for authority in self.authorities.iter().filter(|a| a.issuer_matches) {
            collect_failed_claims(&authority.conditions, &mut out);
        }
        out
    }

    /// One line saying why: which authority held, or what failed.
    pub fn summary(&self) -> String {
        let issuer = self.issuer.as_deref();
        if let Some(held) = self.authorities.iter().find(|a| a.held()) {
            return format!("released: {}", held.reason(issuer));
        }
        if !self.authorities.iter().any(|a| a.issuer_matches) {
            let issuer = issuer.map_or("none".to_owned(), |i| format!("{i:?}"));
            return format!(
                "refused: no authority in the policy matches the token issuer {issuer}"
            );
        }
        let reasons: Vec<String> = self
            .failed_claims()
            .iter()
            .map(|c| format!("{}: {}", c.path, c.reason))
            .collect();
        format!("refused: {}", reasons.join("; "))
    }

    /// A multi-line explanation: the verdict, then every authority statement and every
    /// condition with its reason, indented by nesting.
    pub fn explain(&self) -> String {
        let mut out = self.summary();
        out.push('\n');
        for authority in &self.authorities {
            let mark = if authority.held() { "held" } else { "not met" };
            let reason = authority.reason(self.issuer.as_deref());
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{} [{mark}] {reason}", authority.path);
            write_condition(&mut out, &authority.conditions, 1);
        }
        out
    }
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain())
    }
}

fn collect_failed_claims<'a>(c: &'a ConditionEvaluation, out: &mut Vec<&'a ConditionEvaluation>) {
    match &c.detail {
        ConditionDetail::Claim { .. } if !c.held => out.push(c),
        ConditionDetail::Claim { .. } => {}
        ConditionDetail::Group { members, .. } => {
            if !c.held {
                for member in members {
                    collect_failed_claims(member, out);
                }
            }
        }
    }
}

fn write_condition(out: &mut String, c: &ConditionEvaluation, depth: usize) {
    let mark = if c.held { "held" } else { "not met" };
    let _ = writeln!(
        out,
        "{:indent$}{} [{mark}] {}",
        "",
        c.path,
        c.reason,
        indent = depth * 2
    );
    if let ConditionDetail::Group { members, .. } = &c.detail {
        for member in members {
            write_condition(out, member, depth + 1);
        }
    }
}

fn evaluate_group(group: &Group, parent: &DocPath, claims: &Value) -> ConditionEvaluation {
    let path = parent.field(group.kind.as_str());
    let members: Vec<_> = group
        .members
        .iter()
        .enumerate()
        .map(|(i, member)| evaluate_condition(member, &path.index(i), claims))
        .collect();
    let met = members.iter().filter(|m| m.held).count();
    let (held, reason) = match group.kind {
        GroupKind::AllOf => (
            met == members.len(),
            format!(
                "allOf: {met} of {} conditions hold, all are required",
                members.len()
            ),
        ),
        GroupKind::AnyOf => (
            met > 0,
            format!(
                "anyOf: {met} of {} conditions hold, one is required",
                members.len()
            ),
        ),
    };
    ConditionEvaluation {
        path,
        held,
        reason,
        detail: ConditionDetail::Group {
            kind: group.kind,
            members,
        },
    }
}

fn evaluate_condition(
    condition: &Condition,
    path: &DocPath,
    claims: &Value,
) -> ConditionEvaluation {
    match condition {
        Condition::Group(group) => {
            let mut evaluation = evaluate_group(group, path, claims);
            // A nested group is reported at its own position, not at `...[i].allOf`.
            evaluation.path = path.clone();
            evaluation
        }
        Condition::Claim(claim) => evaluate_claim(claim, path, claims),
    }
}

/// Looks a claim up: the whole name as a top-level claim first, then as a dotted path through
/// nested objects.
pub fn lookup_claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.split('.')
        .try_fold(claims, |value, segment| value.as_object()?.get(segment))
}

fn evaluate_claim(c: &ClaimCondition, path: &DocPath, claims: &Value) -> ConditionEvaluation {
    let actual = lookup_claim(claims, &c.claim);
    let (held, reason) = judge(c, actual);
    ConditionEvaluation {
        path: path.clone(),
        held,
        reason,
        detail: ConditionDetail::Claim {
            claim: c.claim.clone(),
            operator: c.operator,
            expected: c.value.clone(),
            actual: actual.cloned(),
        },
    }
}

/// Decides one claim condition and says why.
fn judge(c: &ClaimCondition, actual: Option<&Value>) -> (bool, String) {
    let claim = &c.claim;
    let op = c.operator;
    let expected = &c.value;
    match (op, actual) {
        (Operator::Exists, actual) => {
            judge_exists(claim, expected.as_bool().unwrap_or(true), actual)
        }
        (_, None) => (
            false,
            format!("claim {claim} is missing from the token, expected {op} {expected}"),
        ),
        (Operator::Equals | Operator::NotEquals, Some(actual)) => {
            let equality = loosely_equal(actual, expected);
            let equal = equality != Equality::Different;
            let held = equal == (op == Operator::Equals);
            let note = if equality == Equality::SameText {
                " (compared as text)"
            } else {
                ""
            };
            (held, outcome(claim, actual, op, expected, held, note))
        }
        (
            Operator::Less | Operator::LessOrEquals | Operator::Greater | Operator::GreaterOrEquals,
            Some(actual),
        ) => {
            let Some(order) = numeric_order(actual, expected) else {
                let reason = format!(
                    "claim {claim} is {actual}, which cannot be compared as a number with \
                     {expected}; expected {op} {expected}"
                );
                return (false, reason);
            };
            let held = match op {
                Operator::Less => order == Ordering::Less,
                Operator::LessOrEquals => order != Ordering::Greater,
                Operator::Greater => order == Ordering::Greater,
                _ => order != Ordering::Less,
            };
            (held, outcome(claim, actual, op, expected, held, ""))
        }
    }
}

fn outcome(
    claim: &str,
    actual: &Value,
    op: Operator,
    expected: &Value,
    held: bool,
    note: &str,
) -> String {
    if held {
        format!("claim {claim} is {actual}, which satisfies {op} {expected}{note}")
    } else {
        format!("claim {claim} is {actual}, expected {op} {expected}{note}")
    }
}

fn judge_exists(claim: &str, want_present: bool, actual: Option<&Value>) -> (bool, String) {
    match (actual, want_present) {
        (Some(v), true) => (true, format!("claim {claim} is present ({v})")),
        (None, true) => (
            false,
            format!("claim {claim} is missing, expected it to exist"),
        ),
        (Some(v), false) => (
            false,
            format!("claim {claim} is present ({v}), expected it to be absent"),
        ),
        (None, false) => (true, format!("claim {claim} is absent, as required")),
    }
}
