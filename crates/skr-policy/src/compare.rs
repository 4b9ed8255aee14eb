//! The loose comparison of claim values with policy values.
//!
//! Real policies compare boolean and number claims with strings (`"equals": "false"` against a
//! boolean claim, `"equals": "0"` against a number, `"equals": "true"` against `true`) and the
//! service releases. So two values are *equal* when they are the same JSON value (numbers
//! compared numerically) or when their canonical texts are the same: `true`/`false` in lower
//! case, numbers as JSON writes them (`2`, `1.5`), strings as they are. Strings compare
//! case-sensitively.
//!
//! The ordering operators compare numbers; a string that is a JSON number (`"10"`) counts as
//! that number. Anything else (a boolean, a non-numeric string, an object) is not comparable and
//! the condition does not hold.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// A number taken from a claim or a policy value: exact for integers, `f64` otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An integer (from any JSON integer, signed or unsigned).
    Int(i128),
    /// A number with a fraction or exponent.
    Float(f64),
}

impl Num {
    fn from_number(n: &Number) -> Option<Self> {
        if let Some(i) = n.as_i64() {
            Some(Num::Int(i128::from(i)))
        } else if let Some(u) = n.as_u64() {
            Some(Num::Int(i128::from(u)))
        } else {
            n.as_f64().filter(|f| f.is_finite()).map(Num::Float)
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            // Precision loss beyond 2^53 only matters when comparing with a float.
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Orders two numbers; integers exactly.
    pub fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

/// The value as a number: a JSON number, or a string that is exactly a JSON number.
pub fn as_number(value: &Value) -> Option<Num> {
    match value {
        Value::Number(n) => Num::from_number(n),
        Value::String(s) => {
            // `Number::from_str` accepts exactly JSON's number syntax (no spaces, no "inf").
            let n: Number = s.parse().ok()?;
            Num::from_number(&n)
        }
        _ => None,
    }
}

/// The canonical text of a scalar: what a string would have to say to be loosely equal to it.
pub fn canonical_text(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// How two values compared under [`loosely_equal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Equality {
    /// Same JSON type, same value.
    Same,
    /// Different JSON types whose canonical texts agree (`true` and `"true"`).
    SameText,
    /// Not equal.
    Different,
}

/// Compares a claim with a policy value under the loose rule of this module.
pub fn loosely_equal(claim: &Value, expected: &Value) -> Equality {
    let same = match (claim, expected) {
        (Value::Number(a), Value::Number(b)) => match (Num::from_number(a), Num::from_number(b)) {
            (Some(a), Some(b)) => Some(a.compare(b) == Some(Ordering::Equal)),
            _ => Some(false),
        },
        (Value::String(a), Value::String(b)) => Some(a == b),
        (Value::Bool(a), Value::Bool(b)) => Some(a == b),
        _ => None,
    };
    match same {
        Some(true) => Equality::Same,
        Some(false) => Equality::Different,
        None => match (canonical_text(claim), canonical_text(expected)) {
            (Some(a), Some(b)) if a == b => Equality::SameText,
            _ => Equality::Different,
        },
    }
}

/// Orders a claim against a policy value numerically; `None` if either is not a number.
pub fn numeric_order(claim: &Value, expected: &Value) -> Option<Ordering> {
    as_number(claim)?.compare(as_number(expected)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equality_table() {
        use Equality::*;
        let cases = [
            (json!("abc"), json!("abc"), Same),
            (json!("abc"), json!("ABC"), Different),
            (json!(true), json!(true), Same),
            (json!(true), json!("true"), SameText),
            (json!(false), json!("false"), SameText),
            (json!(false), json!("False"), Different),
            (json!(false), json!(0), Different),
            (json!(0), json!("0"), SameText),
            (json!(2), json!(2.0), Same),
            (json!(2), json!("2.0"), Different),
            (json!("10"), json!(10), SameText),
            (json!(u64::MAX), json!(u64::MAX), Same),
            (json!(u64::MAX), json!(-1), Different),
            (json!(null), json!("null"), Different),
            (json!({"a": 1}), json!("a"), Different),
            (json!([1]), json!(1), Different),
        ];
        for (claim, expected, want) in cases {
            assert_eq!(
                loosely_equal(&claim, &expected),
                want,
                "{claim} vs {expected}"
            );
        }
    }

    #[test]
    fn ordering_table() {
        use Ordering::*;
        let cases = [
            (json!(1), json!(2), Some(Less)),
            (json!(2), json!(2), Some(Equal)),
            (json!(3), json!(2), Some(Greater)),
            (json!("10"), json!(9), Some(Greater)),
            (json!(1.5), json!(1), Some(Greater)),
            (json!(-1), json!(u64::MAX), Some(Less)),
            (json!("1e3"), json!(999), Some(Greater)),
            (json!(" 1"), json!(1), None),
            (json!("inf"), json!(1), None),
            (json!(true), json!(1), None),
            (json!("abc"), json!("abd"), None),
        ];
        for (claim, expected, want) in cases {
            assert_eq!(
                numeric_order(&claim, &expected),
                want,
                "{claim} vs {expected}"
            );
        }
    }
}
