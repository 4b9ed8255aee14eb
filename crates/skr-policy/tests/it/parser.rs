//! The parser on arbitrary input: it returns a policy or an error, never panics, and what it
//! accepts survives a round trip through the canonical form.

use proptest::prelude::*;
use quarry_skr_policy::ReleasePolicy;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        prop::sample::select(vec![
            "version",
            "1.0.0",
            "anyOf",
            "allOf",
            "authority",
            "claim",
            "equals",
            "exists",
            "greater",
            "a.b",
            "",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        let keys = prop::sample::select(vec![
            "version",
            "anyOf",
            "allOf",
            "authority",
            "claim",
            "equals",
            "notEquals",
            "less",
            "exists",
            "greaterOrEquals",
            "value",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..5).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #[test]
    fn never_panics_and_round_trips(value in arb_json()) {
        if let Ok(policy) = ReleasePolicy::from_value(&value) {
            let text = policy.to_canonical_json();
            let again = ReleasePolicy::from_json(text.as_bytes()).unwrap();
            prop_assert_eq!(again, policy);
        }
    }

    #[test]
    fn arbitrary_bytes_give_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = ReleasePolicy::from_json(&bytes);
    }
}

#[test]
fn deeply_nested_json_is_refused_not_overflowed() {
    let text = "[".repeat(100_000);
    let err = ReleasePolicy::from_json(text.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}
