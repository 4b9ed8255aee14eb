//! Fuzzes the release policy parser and evaluation: any bytes give a policy or an error, never a
//! panic; an accepted policy survives a round trip through its canonical form, and evaluating
//! it against a token built from the same input does not panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_skr_policy::ReleasePolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = ReleasePolicy::from_json(data) else {
        return;
    };
    let canonical = policy.to_canonical_json();
    let again = ReleasePolicy::from_json(canonical.as_bytes()).expect("canonical form parses");
    assert_eq!(again, policy);

    let claims: serde_json::Value =
        serde_json::from_slice(data).unwrap_or(serde_json::Value::Null);
    let evaluation = policy.evaluate(&claims);
    let _ = evaluation.explain();
});
