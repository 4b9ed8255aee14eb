//! The release policy of the Managed HSM guide (`policy.json`, step 5), evaluated against the
//! claims MAA issues for SGX enclaves.

use quarry_skr_policy::{ConditionDetail, ReleasePolicy, Verdict};
use serde_json::{Value, json};

/// The guide's `policy.json`, byte for byte.
const SEED_POLICY: &str = r#"{
    "version": "1.0.0",
    "anyOf": [
        {
            "authority": "https://shareduks.uks.attest.azure.net",
            "allOf": [
                {
                    "claim": "x-ms-sgx-mrsigner",
                    "equals": "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a"
                },
                {
                    "claim": "x-ms-sgx-svn",
                    "greaterOrEquals": 2
                },
                {
                    "claim": "x-ms-sgx-product-id",
                    "greaterOrEquals": 3
                },
                {
                    "claim": "x-ms-sgx-is-debuggable",
                    "equals": false
                }
            ]
        }
    ]
}"#;

const MRSIGNER: &str = "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a";

fn claims(mrsigner: &str, svn: u16, product_id: u16, debug: bool) -> Value {
    json!({
        "iss": "https://shareduks.uks.attest.azure.net",
        "x-ms-attestation-type": "sgx",
        "x-ms-sgx-mrenclave": "f56735aa42563627a832e0c7ba9911382eb68afed75830b3f97266f3e67bdc99",
        "x-ms-sgx-mrsigner": mrsigner,
        "x-ms-sgx-svn": svn,
        "x-ms-sgx-product-id": product_id,
        "x-ms-sgx-is-debuggable": debug,
    })
}

fn policy() -> ReleasePolicy {
    ReleasePolicy::from_json(SEED_POLICY.as_bytes()).unwrap()
}

/// The claims named by failing conditions.
fn failed(claims: &Value) -> Vec<String> {
    let evaluation = policy().evaluate(claims);
    assert_eq!(evaluation.verdict, Verdict::Refused, "{evaluation}");
    evaluation
        .failed_claims()
        .iter()
        .map(|c| match &c.detail {
            ConditionDetail::Claim { claim, .. } => claim.clone(),
            ConditionDetail::Group { .. } => panic!("a group is not a claim"),
        })
        .collect()
}

#[test]
fn releases_to_the_coordinator_the_policy_names() {
    let evaluation = policy().evaluate(&claims(MRSIGNER, 2, 3, false));
    assert_eq!(evaluation.verdict, Verdict::Released, "{evaluation}");
    assert!(evaluation.failed_claims().is_empty());
    assert!(evaluation.summary().starts_with("released: authority"));
    // A later security version and product id still satisfy greaterOrEquals.
    assert!(
        policy()
            .evaluate(&claims(MRSIGNER, 7, 3, false))
            .is_released()
    );
}

#[test]
fn refuses_an_older_security_version_and_names_the_svn() {
    let c = claims(MRSIGNER, 1, 3, false);
    assert_eq!(failed(&c), ["x-ms-sgx-svn"]);
    let summary = policy().evaluate(&c).summary();
    assert!(
        summary.contains("anyOf[0].allOf[1]: claim x-ms-sgx-svn is 1, expected greaterOrEquals 2"),
        "{summary}"
    );
}

#[test]
fn refuses_a_debug_enclave_and_names_the_debug_claim() {
    let c = claims(MRSIGNER, 2, 3, true);
    assert_eq!(failed(&c), ["x-ms-sgx-is-debuggable"]);
    let summary = policy().evaluate(&c).summary();
    assert!(
        summary.contains("claim x-ms-sgx-is-debuggable is true, expected equals false"),
        "{summary}"
    );
}

#[test]
fn refuses_another_signer_and_names_the_mrsigner() {
    let other = "a595c6c5805da0c9c4cb920334d354aeaee2207e479dff679d5f360375f557dd";
    let c = claims(other, 2, 3, false);
    assert_eq!(failed(&c), ["x-ms-sgx-mrsigner"]);
    let summary = policy().evaluate(&c).summary();
    assert!(
        summary.contains(other) && summary.contains(MRSIGNER),
        "{summary}"
    );
}

#[test]
fn refuses_a_token_from_another_attestation_service() {
    let mut c = claims(MRSIGNER, 2, 3, false);
    c["iss"] = json!("https://sharedeus.eus.attest.azure.net");
    let evaluation = policy().evaluate(&c);
    assert_eq!(evaluation.verdict, Verdict::Refused);
    assert!(evaluation.authorities[0].conditions_hold);
    assert!(!evaluation.authorities[0].issuer_matches);
    assert!(
        evaluation
            .summary()
            .contains("no authority in the policy matches the token issuer"),
        "{}",
        evaluation.summary()
    );
}

#[test]
fn refuses_when_claims_are_missing_and_lists_every_one() {
    let c = json!({"iss": "https://shareduks.uks.attest.azure.net"});
    assert_eq!(
        failed(&c),
        [
            "x-ms-sgx-mrsigner",
            "x-ms-sgx-svn",
            "x-ms-sgx-product-id",
            "x-ms-sgx-is-debuggable"
        ]
    );
    assert!(
        policy()
            .evaluate(&c)
            .summary()
            .contains("claim x-ms-sgx-svn is missing from the token")
    );
}

#[test]
fn explanation_shows_every_condition() {
    let text = policy().evaluate(&claims(MRSIGNER, 1, 3, true)).explain();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(
        lines[1].starts_with("anyOf[0] [not met] authority"),
        "{text}"
    );
    assert!(
        lines[2].contains("anyOf[0].allOf [not met] allOf: 2 of 4 conditions hold"),
        "{text}"
    );
    assert!(lines[3].contains("anyOf[0].allOf[0] [held]"), "{text}");
    assert!(lines[4].contains("anyOf[0].allOf[1] [not met]"), "{text}");
}

#[test]
fn real_service_sdk_test_policy_releases_with_a_string_for_a_boolean() {
    // The policy the Managed HSM stored in the SDK's recorded release (testdata/azure README):
    // "equals": "true" (a string) against the boolean claim sdk-test.
    let policy = ReleasePolicy::from_json(
        br#"{"anyOf":[{"allOf":[{"claim":"sdk-test","equals":"true"}],"authority":"https://malegeskrkvsite.azurewebsites.net/"}],"version":"1.0.0"}"#,
    )
    .unwrap();
    let c = json!({"iss": "https://malegeskrkvsite.azurewebsites.net/", "sdk-test": true});
    assert!(policy.evaluate(&c).is_released());
}
