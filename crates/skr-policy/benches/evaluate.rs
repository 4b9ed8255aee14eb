//! The cost of a release decision: parsing the guide's policy, evaluating it against an SGX
//! token's claims (released and refused), and writing the explanation — each read as a ratio
//! to parsing the claims JSON, which every release does anyway.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use quarry_skr_policy::ReleasePolicy;

const POLICY: &str = r#"{"version":"1.0.0","anyOf":[{"authority":"https://shareduks.uks.attest.azure.net","allOf":[
    {"claim":"x-ms-sgx-mrsigner","equals":"43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a"},
    {"claim":"x-ms-sgx-svn","greaterOrEquals":2},{"claim":"x-ms-sgx-product-id","greaterOrEquals":3},
    {"claim":"x-ms-sgx-is-debuggable","equals":false}]}]}"#;

fn claims(svn: u16) -> String {
    serde_json::json!({
        "exp": 1735718400, "iat": 1735689600, "nbf": 1735689600,
        "iss": "https://shareduks.uks.attest.azure.net",
        "jti": "f7304afc10dee935f05f66ea9e2fd296e043b4fe340379a3a005290ccf732781",
        "x-ms-ver": "1.0", "x-ms-attestation-type": "sgx",
        "x-ms-sgx-is-debuggable": false,
        "x-ms-sgx-mrenclave": "d1989d2574d3dee84de685e2b88aef0c2ca2b9662b8e4c0da2636ef0a3222906",
        "x-ms-sgx-mrsigner": "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a",
        "x-ms-sgx-product-id": 3, "x-ms-sgx-svn": svn,
        "x-ms-sgx-report-data": "00".repeat(64),
        "x-ms-runtime": {"keys": [{"kid": "k", "kty": "RSA", "key_ops": ["encrypt"], "e": "AQAB", "n": "A".repeat(342)}]},
    })
    .to_string()
}

fn policy(c: &mut Criterion) {
    let released = claims(2);
    let refused = claims(1);
    let policy = ReleasePolicy::from_json(POLICY.as_bytes()).expect("policy");
    let released_value: serde_json::Value = serde_json::from_str(&released).expect("claims");
    let refused_value: serde_json::Value = serde_json::from_str(&refused).expect("claims");

    let mut group = c.benchmark_group("policy");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("baseline_parse_claims_json", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&released)).expect("claims"))
    });
    group.bench_function("parse_policy", |b| {
        b.iter(|| ReleasePolicy::from_json(black_box(POLICY.as_bytes())).expect("policy"))
    });
    group.bench_function("evaluate_released", |b| {
        b.iter(|| policy.evaluate(black_box(&released_value)).is_released())
    });
    group.bench_function("evaluate_refused_and_explain", |b| {
        b.iter(|| policy.evaluate(black_box(&refused_value)).explain())
    });
    group.finish();
}

criterion_group!(benches, policy);
criterion_main!(benches);
