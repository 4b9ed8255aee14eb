//! `quarry hsm check-policy`: the verdict and its reasons for the release policy of the HSM
//! guide, against a matching identity, non-matching ones, a real MAA token and a real quote.

use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;

use crate::support::{file, quarry_in, testdata};

/// The release policy of the Managed HSM guide, as written there.
const GUIDE_POLICY: &str = r#"{
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

fn check(args: &[&str]) -> assert_cmd::assert::Assert {
    let dir = tempfile::tempdir().unwrap();
    let policy = file(dir.path(), "policy.json", GUIDE_POLICY);
    let mut cmd = quarry_in(dir.path());
    cmd.args(["hsm", "check-policy", "--policy"])
        .arg(&policy)
        .args(args);
    cmd.assert()
}

#[test]
fn matching_identity_is_released() {
    check(&["--mrsigner", MRSIGNER, "--svn", "2", "--product-id", "3"])
        .code(0)
        .stdout(contains("verdict: released"))
        .stdout(contains(
            "anyOf[0].allOf[1] [held] claim x-ms-sgx-svn is 2, which satisfies greaterOrEquals 2",
        ))
        .stdout(contains(
            "the enclave is attested by https://shareduks.uks.attest.azure.net, the policy's authority",
        ));
}

#[test]
fn other_signer_is_refused_naming_the_claim() {
    let other = "a595c6c5805da0c9c4cb920334d354aeaee2207e479dff679d5f360375f557dd";
    check(&["--mrsigner", other, "--svn", "5", "--product-id", "3"])
        .code(1)
        .stdout(contains("verdict: refused"))
        .stdout(contains(format!(
            "refused: anyOf[0].allOf[0]: claim x-ms-sgx-mrsigner is \"{other}\", expected equals \"{MRSIGNER}\""
        )));
}

#[test]
fn older_security_version_is_refused() {
    check(&["--mrsigner", MRSIGNER, "--svn", "1", "--product-id", "3"])
        .code(1)
        .stdout(contains(
            "refused: anyOf[0].allOf[1]: claim x-ms-sgx-svn is 1, expected greaterOrEquals 2",
        ));
}

#[test]
fn debug_enclave_is_refused() {
    check(&[
        "--mrsigner",
        MRSIGNER,
        "--svn",
        "2",
        "--product-id",
        "3",
        "--debug",
    ])
    .code(1)
    .stdout(contains(
        "refused: anyOf[0].allOf[3]: claim x-ms-sgx-is-debuggable is true, expected equals false",
    ));
}

#[test]
fn other_attestation_region_is_refused() {
    check(&[
        "--mrsigner",
        MRSIGNER,
        "--svn",
        "2",
        "--product-id",
        "3",
        "--authority",
        "https://sharedeus.eus.attest.azure.net",
    ])
    .code(1)
    .stdout(contains(
        "refused: no authority in the policy matches the token issuer \"https://sharedeus.eus.attest.azure.net\"",
    ));
}

#[test]
fn real_maa_token_is_refused_for_its_issuer_with_verified_signature() {
    let token = testdata("azure/maa-sgx-token.jwt");
    let certs = testdata("azure/maa-certs.json");
    let out = check(&[
        "--output",
        "json",
        "--token",
        token.to_str().unwrap(),
        "--maa-certs",
        certs.to_str().unwrap(),
    ])
    .code(1)
    .get_output()
    .stdout
    .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verdict"], "refused");
    assert_eq!(v["issuer"], "https://sharedeus.eus.attest.azure.net");
    assert_eq!(
        v["reason"],
        "refused: no authority in the policy matches the token issuer \"https://sharedeus.eus.attest.azure.net\""
    );
    let assumptions = v["assumptions"].to_string();
    assert!(
        assumptions.contains("RS256 signature verified"),
        "{assumptions}"
    );
    assert!(
        assumptions.contains("the token expired at 2023-09-26"),
        "{assumptions}"
    );
    // Its claims also fail the guide's conditions, one by one.
    let conditions = v["conditions"].as_array().unwrap();
    let svn = conditions
        .iter()
        .find(|c| c["path"] == "anyOf[0].allOf[1]")
        .unwrap();
    assert_eq!(svn["held"], false);
    assert_eq!(svn["actual"], 1);
}

#[test]
fn real_maa_token_is_released_by_a_policy_for_its_enclave() {
    let dir = tempfile::tempdir().unwrap();
    let policy = file(
        dir.path(),
        "policy.json",
        r#"{"version":"1.0.0","anyOf":[{"authority":"https://sharedeus.eus.attest.azure.net","allOf":[
            {"claim":"x-ms-sgx-mrsigner","equals":"a595c6c5805da0c9c4cb920334d354aeaee2207e479dff679d5f360375f557dd"},
            {"claim":"x-ms-sgx-is-debuggable","equals":false},
            {"claim":"x-ms-sgx-svn","greaterOrEquals":1}]}]}"#,
    );
    quarry_in(dir.path())
        .args(["hsm", "check-policy", "--policy"])
        .arg(&policy)
        .arg("--token")
        .arg(testdata("azure/maa-sgx-token.jwt"))
        .arg("--maa-certs")
        .arg(testdata("azure/maa-certs.json"))
        .assert()
        .code(0)
        .stdout(contains("verdict: released"));
}

#[test]
fn tampered_token_fails_signature_check() {
    let dir = tempfile::tempdir().unwrap();
    let token = std::fs::read_to_string(testdata("azure/maa-sgx-token.jwt")).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    // Raise the SVN claim: the claims still decode, the signature no longer matches.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(b64.decode(&parts[1]).unwrap()).unwrap();
    let raised = payload.replace("\"x-ms-sgx-svn\":1", "\"x-ms-sgx-svn\":3");
    assert_ne!(payload, raised);
    parts[1] = b64.encode(raised);
    let tampered = file(dir.path(), "t.jwt", parts.join("."));
    let policy = file(dir.path(), "policy.json", GUIDE_POLICY);
    quarry_in(dir.path())
        .args(["hsm", "check-policy", "--policy"])
        .arg(&policy)
        .arg("--token")
        .arg(&tampered)
        .arg("--maa-certs")
        .arg(testdata("azure/maa-certs.json"))
        .assert()
        .code(1)
        .stderr(contains("the signature does not verify with key"));
}

#[test]
fn real_quote_claims_come_from_its_report_body() {
    let dir = tempfile::tempdir().unwrap();
    let policy = file(
        dir.path(),
        "policy.json",
        r#"{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[
            {"claim":"x-ms-sgx-mrsigner","equals":"815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"},
            {"claim":"x-ms-sgx-mrenclave","equals":"33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"},
            {"claim":"x-ms-sgx-is-debuggable","equals":false}]}]}"#,
    );
    quarry_in(dir.path())
        .args(["hsm", "check-policy", "--policy"])
        .arg(&policy)
        .arg("--quote")
        .arg(testdata("sgx/dcap-qvl-sample.quote"))
        .args(["--authority", "https://maa.example"])
        .assert()
        .code(0)
        .stdout(contains("verdict: released"))
        .stdout(contains("signature and TCB level were not checked here"));
}

#[test]
fn unreadable_policy_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let policy = file(dir.path(), "policy.json", r#"{"version":"0.2","anyOf":[]}"#);
    quarry_in(dir.path())
        .args(["hsm", "check-policy", "--policy"])
        .arg(&policy)
        .args(["--mrsigner", MRSIGNER])
        .assert()
        .code(3)
        .stderr(contains("error: policy"))
        .stderr(predicate::str::contains('\n').count(1));
}
