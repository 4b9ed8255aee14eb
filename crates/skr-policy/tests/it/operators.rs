//! Every operator and the loose comparison, through whole-policy evaluation: one row per case
//! with the claim value (absent when `None`), the condition and the expected outcome.

use quarry_skr_policy::ReleasePolicy;
use serde_json::{Value, json};

const AUTHORITY: &str = "https://attest.example";

fn released(condition: &str, claim: Option<Value>) -> bool {
    let text = format!(
        r#"{{"version":"1.0.0","anyOf":[{{"authority":"{AUTHORITY}","allOf":[{condition}]}}]}}"#
    );
    let policy = ReleasePolicy::from_json(text.as_bytes()).unwrap();
    let mut claims = json!({"iss": AUTHORITY, "nested": {"inner": {"leaf": 5}}});
    if let Some(value) = claim {
        claims["c"] = value;
    }
    policy.evaluate(&claims).is_released()
}

#[test]
fn operator_table() {
    let rows: &[(&str, Option<Value>, bool)] = &[
        // equals, including the loose comparison
        (r#"{"claim":"c","equals":"abc"}"#, Some(json!("abc")), true),
        (r#"{"claim":"c","equals":"abc"}"#, Some(json!("ABC")), false),
        (r#"{"claim":"c","equals":false}"#, Some(json!(false)), true),
        (
            r#"{"claim":"c","equals":"false"}"#,
            Some(json!(false)),
            true,
        ),
        (r#"{"claim":"c","equals":"true"}"#, Some(json!(true)), true),
        (r#"{"claim":"c","equals":"True"}"#, Some(json!(true)), false),
        (r#"{"claim":"c","equals":"0"}"#, Some(json!(0)), true),
        (r#"{"claim":"c","equals":0}"#, Some(json!("0")), true),
        (r#"{"claim":"c","equals":0}"#, Some(json!(false)), false),
        (r#"{"claim":"c","equals":3}"#, Some(json!(3.0)), true),
        (r#"{"claim":"c","equals":"10"}"#, Some(json!("10")), true),
        (r#"{"claim":"c","equals":1}"#, None, false),
        (
            r#"{"claim":"c","equals":"x"}"#,
            Some(json!({"x": 1})),
            false,
        ),
        // notEquals
        (
            r#"{"claim":"c","notEquals":"abc"}"#,
            Some(json!("abd")),
            true,
        ),
        (
            r#"{"claim":"c","notEquals":"abc"}"#,
            Some(json!("abc")),
            false,
        ),
        (
            r#"{"claim":"c","notEquals":"true"}"#,
            Some(json!(true)),
            false,
        ),
        (r#"{"claim":"c","notEquals":1}"#, None, false),
        // less
        (r#"{"claim":"c","less":2}"#, Some(json!(1)), true),
        (r#"{"claim":"c","less":2}"#, Some(json!(2)), false),
        (r#"{"claim":"c","less":"2"}"#, Some(json!(1)), true),
        (r#"{"claim":"c","less":2}"#, None, false),
        // lessOrEquals
        (r#"{"claim":"c","lessOrEquals":2}"#, Some(json!(2)), true),
        (r#"{"claim":"c","lessOrEquals":2}"#, Some(json!(3)), false),
        (r#"{"claim":"c","lessOrEquals":2.5}"#, Some(json!(2)), true),
        // greater
        (r#"{"claim":"c","greater":1}"#, Some(json!(2)), true),
        (r#"{"claim":"c","greater":1}"#, Some(json!(1)), false),
        (r#"{"claim":"c","greater":9}"#, Some(json!("10")), true),
        (r#"{"claim":"c","greater":1}"#, Some(json!(true)), false),
        (r#"{"claim":"c","greater":"a"}"#, Some(json!("b")), false),
        // greaterOrEquals
        (r#"{"claim":"c","greaterOrEquals":2}"#, Some(json!(2)), true),
        (
            r#"{"claim":"c","greaterOrEquals":2}"#,
            Some(json!(1)),
            false,
        ),
        (
            r#"{"claim":"c","greaterOrEquals":2}"#,
            Some(json!(u64::MAX)),
            true,
        ),
        (
            r#"{"claim":"c","greaterOrEquals":0}"#,
            Some(json!(-1)),
            false,
        ),
        (r#"{"claim":"c","greaterOrEquals":2}"#, None, false),
        // exists
        (r#"{"claim":"c","exists":true}"#, Some(json!(null)), true),
        (r#"{"claim":"c","exists":true}"#, None, false),
        (r#"{"claim":"c","exists":false}"#, None, true),
        (r#"{"claim":"c","exists":false}"#, Some(json!(0)), false),
        // dotted paths
        (r#"{"claim":"nested.inner.leaf","equals":5}"#, None, true),
        (r#"{"claim":"nested.inner.leaf","equals":6}"#, None, false),
        (
            r#"{"claim":"nested.inner.other","exists":false}"#,
            None,
            true,
        ),
        (
            r#"{"claim":"nested.inner.leaf.deeper","exists":true}"#,
            None,
            false,
        ),
        (
            r#"{"claim":"c.x","equals":1}"#,
            Some(json!({"x": "1"})),
            true,
        ),
        // nested groups
        (
            r#"{"anyOf":[{"claim":"c","equals":1},{"claim":"c","equals":2}]}"#,
            Some(json!(2)),
            true,
        ),
        (
            r#"{"anyOf":[{"claim":"c","equals":1},{"claim":"c","equals":2}]}"#,
            Some(json!(3)),
            false,
        ),
        (
            r#"{"allOf":[{"claim":"c","greater":1},{"anyOf":[{"claim":"c","less":3},{"claim":"nested.inner.leaf","equals":4}]}]}"#,
            Some(json!(2)),
            true,
        ),
        (
            r#"{"allOf":[{"claim":"c","greater":1},{"anyOf":[{"claim":"c","less":3},{"claim":"nested.inner.leaf","equals":4}]}]}"#,
            Some(json!(3)),
            false,
        ),
    ];
    for (condition, claim, want) in rows {
        assert_eq!(
            released(condition, claim.clone()),
            *want,
            "{condition} with claim {claim:?}"
        );
    }
}

#[test]
fn any_matching_authority_statement_releases() {
    let policy = ReleasePolicy::from_json(
        br#"{"version":"1.0.0","anyOf":[
            {"authority":"https://a","allOf":[{"claim":"x","equals":1}]},
            {"authority":"https://b","anyOf":[{"claim":"x","equals":2}]},
            {"authority":"https://b","allOf":[{"claim":"x","equals":3}]}]}"#,
    )
    .unwrap();
    let verdict = |iss: &str, x: i32| policy.evaluate(&json!({"iss": iss, "x": x})).is_released();
    assert!(verdict("https://a", 1));
    assert!(
        !verdict("https://a", 2),
        "the statement for b does not apply to a token from a"
    );
    assert!(verdict("https://b", 2));
    assert!(verdict("https://b", 3));
    assert!(
        !verdict("https://b/", 3),
        "authorities are compared exactly"
    );
    assert!(
        !policy.evaluate(&json!({"x": 1})).is_released(),
        "a token without iss"
    );
}
